/* libFuzzer target for text.c, the byte-level parsers of outside text: text_utf8_valid (every
 * Kafka payload, pattern ID, agent name, path segment and query parameter passes it) against a
 * reference validator, and text_parse_time (event times from rules, ?from= and ?to= of the
 * history routes) with text_format_time: a parsed time formats and parses back to itself. */
#include <string.h>

#include "fuzz.h"
#include "text.h"

#define DAY_US (86400LL * 1000000)
/* 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z in microseconds since the epoch. */
#define YEAR0_US (-62167219200LL * 1000000)
#define YEAR10000_US (253402300800LL * 1000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    FUZZ_CHECK(text_utf8_valid(s, size) == fuzz_utf8_ref(data, size));

    int64_t us;
    if (text_parse_time(s, size, &us)) {
        /* A four-digit year, moved by at most a day of UTC offset. */
        FUZZ_CHECK(us >= YEAR0_US - DAY_US && us < YEAR10000_US + DAY_US);
        if (us >= YEAR0_US && us < YEAR10000_US) {
            char buf[64];
            text_format_time(us, buf, sizeof buf);
            int64_t back = 0;
            FUZZ_CHECK(text_parse_time(buf, strlen(buf), &back));
            FUZZ_CHECK(back == us);
        }
    }

    /* Any eight bytes as a time: the text is bounded and terminated, whatever the value. */
    if (size >= 8) {
        int64_t any;
        memcpy(&any, data, sizeof any);
        char buf[40];
        memset(buf, 'x', sizeof buf);
        text_format_time(any, buf, sizeof buf);
        FUZZ_CHECK(memchr(buf, '\0', sizeof buf) != NULL);
    }
    return 0;
}
