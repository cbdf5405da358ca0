#include "text.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

size_t text_utf8_seq(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF; /* the second byte's range: excludes overlongs, surrogates */
    size_t k;
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        k = 2;
    } else if (c == 0xE0) {
        k = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        k = 3;
    } else if (c == 0xED) {
        k = 3;
        hi = 0x9F;
    } else if (c == 0xF0) {
        k = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        k = 4;
    } else if (c == 0xF4) {
        k = 4;
        hi = 0x8F;
    } else {
        return 0;
    }
    if (n < k || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < k; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return k;
}

bool text_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        /* ASCII fast path: most payloads are ASCII, check 8 bytes at a time. */
        if (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        size_t k = text_utf8_seq(str + i, len - i);
        if (k == 0) {
            return false;
        }
        i += k;
    }
    return true;
}

static bool digits(const char *s, size_t len, size_t at, int n, int *out)
{
    if (at + (size_t)n > len) {
        return false;
    }
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = s[at + (size_t)i];
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool text_parse_time(const char *s, size_t len, int64_t *out_us)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    size_t p = 0;
    if (!digits(s, len, 0, 4, &y) || len < 10 || s[4] != '-' || !digits(s, len, 5, 2, &mo) ||
        s[7] != '-' || !digits(s, len, 8, 2, &d)) {
        return false;
    }
    p = 10;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) {
        return false;
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap)) {
        return false;
    }
    int64_t frac_us = 0;
    if (p < len && (s[p] == 'T' || s[p] == 't' || s[p] == ' ')) {
        p++;
        if (!digits(s, len, p, 2, &h) || p + 2 >= len || s[p + 2] != ':' ||
            !digits(s, len, p + 3, 2, &mi)) {
            return false;
        }
        p += 5;
        if (p < len && s[p] == ':') {
            if (!digits(s, len, p + 1, 2, &sec)) {
                return false;
            }
            p += 3;
            if (p < len && (s[p] == '.' || s[p] == ',')) {
                p++;
                size_t start = p;
                int64_t scale = 100000;
                while (p < len && s[p] >= '0' && s[p] <= '9') {
                    if (scale > 0) {
                        frac_us += (s[p] - '0') * scale;
                        scale /= 10;
                    }
                    p++;
                }
                if (p == start) {
                    return false;
                }
            }
        }
        /* 60 allows a leap second, read as the next second's start. */
        if (h > 23 || mi > 59 || sec > 60) {
            return false;
        }
    } else if (p != len) {
        return false;
    }
    int offset_s = 0;
    if (p < len) {
        if ((s[p] == 'Z' || s[p] == 'z') && p + 1 == len) {
            p++;
        } else if (s[p] == '+' || s[p] == '-') {
            int oh, om = 0;
            int sign = s[p] == '-' ? -1 : 1;
            if (!digits(s, len, p + 1, 2, &oh)) {
                return false;
            }
            size_t q = p + 3;
            if (q < len && s[q] == ':') {
                q++;
            }
            if (q < len) {
                if (!digits(s, len, q, 2, &om)) {
                    return false;
                }
                q += 2;
            }
            if (q != len || oh > 23 || om > 59) {
                return false;
            }
            offset_s = sign * (oh * 3600 + om * 60);
            p = q;
        } else {
            return false;
        }
    }
    if (p != len) {
        return false;
    }
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
    /* Years 0000 (1 BC) and, through an offset, 10000 are not times PostgreSQL or our
     * formatting take: the result must lie in years 1..9999 UTC. */
    if (secs < TEXT_TIME_MIN_S || secs >= TEXT_TIME_END_S) {
        return false;
    }
    *out_us = secs * 1000000 + frac_us;
    return true;
}

void text_format_time(int64_t us, char *buf, size_t buflen)
{
    int64_t secs = us / 1000000;
    int64_t frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    /* %04d: strftime's %Y does not pad years before 1000 to the four digits ISO-8601 wants. */
    snprintf(buf, buflen, "%04lld-%02d-%02dT%02d:%02d:%02d.%06dZ", (long long)tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

int text_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

uint64_t text_hash(const char *s, size_t len, uint64_t seed)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}
