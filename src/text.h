/* text: byte-level checks and parsers for text that comes from outside (Kafka payloads, rule
 * results, HTTP input). Pure functions; owns no state. */
#ifndef PT_TEXT_H
#define PT_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool text_utf8_valid(const char *s, size_t len);
/* The length of the well-formed UTF-8 sequence s[0..n) starts with (1 to 4), or 0 when its first
 * bytes start none (n >= 1). */
size_t text_utf8_seq(const char *s, size_t n);

/* FNV-1a of s[0..len) from the seed, then a final mix so that the low bits (hash-table slots)
 * are well spread. Not for anything an attacker must not collide. */
uint64_t text_hash(const char *s, size_t len, uint64_t seed);

/* The value of a hex digit (either case), or -1. */
int text_hex_digit(char c);

/* The times text_parse_time accepts: [0001-01-01T00:00:00Z, 10000-01-01T00:00:00Z), in seconds
 * since the epoch. */
#define TEXT_TIME_MIN_S (-62135596800LL)
#define TEXT_TIME_END_S 253402300800LL

/* Parses an ISO-8601 / RFC 3339 timestamp into microseconds since the Unix epoch (UTC):
 * YYYY-MM-DD[T| ]HH:MM[:SS[.fraction]][Z|+HH:MM|-HH:MM|+HHMM]; without an offset the time is
 * read as UTC. Fractions beyond microseconds are truncated. False when s is not such a time,
 * or one outside years 1..9999 once the offset is applied. */
bool text_parse_time(const char *s, size_t len, int64_t *out_us)
    __attribute__((warn_unused_result));

/* Formats microseconds since the epoch as "YYYY-MM-DDTHH:MM:SS.ffffffZ" into buf (>= 32 bytes). */
void text_format_time(int64_t us, char *buf, size_t buflen);

#endif
