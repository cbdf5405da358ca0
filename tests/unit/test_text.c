#include "check.h"
#include "text.h"

#include <ctype.h>
#include <time.h>

/* Reference conversion through timegm: independent of text.c's own date arithmetic. */
static int64_t ref_us(int y, int mo, int d, int h, int mi, int s, int us, int off_s)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    return ((int64_t)timegm(&tm) - off_s) * 1000000 + us;
}

static int64_t parse(const char *s)
{
    int64_t v = -1;
    if (!text_parse_time(s, strlen(s), &v)) {
        return -999;
    }
    return v;
}

int main(void)
{
    /* hex digits of either case (percent-decoding, bytea) and nothing else */
    const char *digits = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        CHECK_EQ_INT(text_hex_digit(digits[i]), i);
        CHECK_EQ_INT(text_hex_digit((char)toupper((unsigned char)digits[i])), i);
    }
    CHECK_EQ_INT(text_hex_digit('g'), -1);
    CHECK_EQ_INT(text_hex_digit('G'), -1);
    CHECK_EQ_INT(text_hex_digit('/'), -1);
    CHECK_EQ_INT(text_hex_digit(':'), -1);
    CHECK_EQ_INT(text_hex_digit('\0'), -1);
    /* the formats seen on the bus */
    CHECK_EQ_INT(parse("2025-11-04T15:02:11.734918+00:00"),
                 ref_us(2025, 11, 4, 15, 2, 11, 734918, 0));
    CHECK_EQ_INT(parse("2025-01-01T00:00:00Z"), ref_us(2025, 1, 1, 0, 0, 0, 0, 0));
    CHECK_EQ_INT(parse("2025-11-04T15:02:11.734Z"), ref_us(2025, 11, 4, 15, 2, 11, 734000, 0));
    CHECK_EQ_INT(parse("2025-11-04T15:02:11.734918"), ref_us(2025, 11, 4, 15, 2, 11, 734918, 0));
    /* offsets, fractions beyond microseconds, lower-case z, space separator */
    CHECK_EQ_INT(parse("2025-11-04T17:02:11+02:00"), ref_us(2025, 11, 4, 15, 2, 11, 0, 0));
    CHECK_EQ_INT(parse("2025-11-04T10:02:11-0500"), ref_us(2025, 11, 4, 15, 2, 11, 0, 0));
    CHECK_EQ_INT(parse("2025-11-04T15:02:11.123456789Z"),
                 ref_us(2025, 11, 4, 15, 2, 11, 123456, 0));
    CHECK_EQ_INT(parse("2025-11-04 15:02:11z"), ref_us(2025, 11, 4, 15, 2, 11, 0, 0));
    CHECK_EQ_INT(parse("2024-02-29T00:00:00Z"), ref_us(2024, 2, 29, 0, 0, 0, 0, 0));
    CHECK_EQ_INT(parse("1970-01-01T00:00:00Z"), 0);
    CHECK_EQ_INT(parse("2025-11-04"), ref_us(2025, 11, 4, 0, 0, 0, 0, 0));
    /* not times */
    CHECK_EQ_INT(parse(""), -999);
    CHECK_EQ_INT(parse("yesterday"), -999);
    CHECK_EQ_INT(parse("2025-13-01T00:00:00Z"), -999);
    CHECK_EQ_INT(parse("2023-02-29T00:00:00Z"), -999);
    CHECK_EQ_INT(parse("2025-11-04T25:00:00Z"), -999);
    CHECK_EQ_INT(parse("2025-11-04T15:02:11Zjunk"), -999);
    CHECK_EQ_INT(parse("2025-11-04T15:02:11."), -999);
    CHECK_EQ_INT(parse("2025-11-04T15"), -999);
    /* years 1..9999 UTC only (PostgreSQL has no year 0; 10000 does not fit the format) */
    CHECK_EQ_INT(parse("0001-01-01T00:00:00Z"), ref_us(1, 1, 1, 0, 0, 0, 0, 0));
    CHECK_EQ_INT(parse("9999-12-31T23:59:59.999999Z"), ref_us(9999, 12, 31, 23, 59, 59, 999999, 0));
    CHECK_EQ_INT(parse("0000-12-31T23:59:59Z"), -999);
    CHECK_EQ_INT(parse("0001-01-01T00:00:00+00:01"), -999);
    CHECK_EQ_INT(parse("9999-12-31T23:59:59-00:01"), -999);

    /* UTF-8 */
    CHECK(text_utf8_valid("plain ascii long enough to use the fast path", 45));
    CHECK(text_utf8_valid("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", 17));
    CHECK(!text_utf8_valid("\xff", 1));
    CHECK(!text_utf8_valid("abc\xc3", 4));              /* truncated */
    CHECK(!text_utf8_valid("\xc0\xaf", 2));             /* overlong */
    CHECK(!text_utf8_valid("\xed\xa0\x80", 3));         /* surrogate */
    CHECK(!text_utf8_valid("\xf4\x90\x80\x80", 4));     /* > U+10FFFF */
    CHECK(!text_utf8_valid("aaaaaaaaaaaaaaa\x80", 16)); /* bad byte after the fast path */
    CHECK(text_utf8_valid("", 0));

    char buf[40];
    text_format_time(ref_us(2025, 11, 4, 15, 2, 11, 734918, 0), buf, sizeof buf);
    CHECK_EQ_STR(buf, "2025-11-04T15:02:11.734918Z");
    text_format_time(ref_us(478, 10, 28, 9, 58, 17, 5, 0), buf, sizeof buf);
    CHECK_EQ_STR(buf, "0478-10-28T09:58:17.000005Z");
    /* years before 1000 keep four digits, so the text parses back */
    text_format_time(ref_us(1, 1, 1, 0, 0, 0, 0, 0), buf, sizeof buf);
    CHECK_EQ_STR(buf, "0001-01-01T00:00:00.000000Z");
    text_format_time(ref_us(999, 12, 31, 23, 59, 59, 1, 0), buf, sizeof buf);
    CHECK_EQ_STR(buf, "0999-12-31T23:59:59.000001Z");
    return check_done("test_text");
}
