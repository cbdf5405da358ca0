#include "auth.h"
#include "check.h"
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#define TOKEN "s3cret-Token_0123456789~+/="

/* Writes text to a new temporary file; its path goes to path (at least 64 bytes). */
static void temp_file(char *path, const char *text)
{
    snprintf(path, 64, "/tmp/pt-test-auth-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
    }
}

/* Loads a config file holding text; NULL with the message in err on error. */
static config_t *load(const char *text, char *err, size_t errlen)
{
    char path[64];
    temp_file(path, text);
    config_t *c = config_load(path, err, errlen);
    unlink(path);
    return c;
}

static void test_check(void)
{
    CHECK_EQ_INT(auth_check(TOKEN, NULL), AUTH_MISSING);
    CHECK_EQ_INT(auth_check(TOKEN, ""), AUTH_MISSING);
    CHECK_EQ_INT(auth_check(TOKEN, "Bearer "), AUTH_MISSING);
    CHECK_EQ_INT(auth_check(TOKEN, "Basic dXNlcjpwYXNz"), AUTH_MISSING);
    CHECK_EQ_INT(auth_check(TOKEN, TOKEN), AUTH_MISSING); /* no scheme */
    CHECK_EQ_INT(auth_check(TOKEN, "Bearer " TOKEN), AUTH_OK);
    CHECK_EQ_INT(auth_check(TOKEN, "bearer " TOKEN), AUTH_OK);
    CHECK_EQ_INT(auth_check(TOKEN, "BEARER   " TOKEN "  "), AUTH_OK);
    CHECK_EQ_INT(auth_check(TOKEN, "Bearer " TOKEN "x"), AUTH_INVALID);
    CHECK_EQ_INT(auth_check(TOKEN, "Bearer s3cret"), AUTH_INVALID); /* a prefix */
    CHECK_EQ_INT(auth_check(TOKEN, "Bearer S3cret-Token_0123456789~+/="), AUTH_INVALID);
    CHECK_EQ_INT(auth_check(TOKEN, "Bearer " TOKEN " " TOKEN), AUTH_INVALID);
    CHECK(auth_equal("", 0, "", 0));
    CHECK(!auth_equal("a", 1, "", 0));
    CHECK(!auth_equal("", 0, "a", 1));
    CHECK(auth_equal("abc", 3, "abc", 3));
    CHECK(!auth_equal("abc", 3, "abd", 3));
    CHECK(!auth_equal("abcd", 4, "abc", 3));
    CHECK(!auth_equal("ab", 2, "abc", 3));
}

static void test_required(void)
{
    CHECK(!auth_required(NULL, true, false, "/api/patterns"));
    CHECK(auth_required(TOKEN, false, false, "/api/patterns"));
    CHECK(auth_required(TOKEN, false, false, "/health")); /* POST /health is no probe */
    CHECK(!auth_required(TOKEN, false, true, "/api/patterns/usage/top"));
    CHECK(auth_required(TOKEN, true, true, "/api/patterns/usage/top"));
    CHECK(auth_required(TOKEN, true, true, "/metrics"));
    CHECK(!auth_required(TOKEN, true, true, "/health"));
    CHECK(auth_required(TOKEN, true, true, "/health/"));
    CHECK(auth_required(TOKEN, true, true, "/h%65alth"));
    /* dead letters need the token even when reads are open, however the path is spelled */
    CHECK(auth_required(TOKEN, false, true, "/api/dead-letters"));
    CHECK(auth_required(TOKEN, false, true, "/api/dead-letters/summary"));
    CHECK(auth_required(TOKEN, false, true, "//api//dead-letters?limit=1"));
    CHECK(auth_required(TOKEN, false, true, "/%61pi/dead%2Dletters"));
    CHECK(auth_required(TOKEN, false, true, "/api/dead-letters/"));
    CHECK(!auth_required(TOKEN, false, true, "/api/dead-letterss"));
    CHECK(!auth_required(TOKEN, false, true, "/api/patterns/usage/dead-letters"));
    CHECK(!auth_required(NULL, false, true, "/api/dead-letters"));
}

static void test_config(void)
{
    char err[2048] = "";
    unsetenv("PATTERNTRACK_HTTP_TOKEN");
    config_t *c = load("return {}", err, sizeof err);
    CHECK(c != NULL && c->http_token == NULL && !c->http_token_reads);
    config_free(c);

    c = load("return { http_token = '' }", err, sizeof err);
    CHECK(c != NULL && c->http_token == NULL);
    config_free(c);

    c = load("return { http_token = '" TOKEN "', http_token_reads = true }", err, sizeof err);
    CHECK(c != NULL && c->http_token_reads);
    CHECK_EQ_STR(c ? c->http_token : "", TOKEN);
    config_free(c);

    /* too short, or a character outside b64token: refused, and the value is never echoed */
    c = load("return { http_token = 'short-secret' }", err, sizeof err);
    CHECK(c == NULL && strstr(err, "http_token must be") && !strstr(err, "short-secret"));
    c = load("return { http_token = 'with space in the secret' }", err, sizeof err);
    CHECK(c == NULL && !strstr(err, "space in the"));

    /* the file: white space around the token is dropped */
    char tok[64], text[256];
    temp_file(tok, "\n  " TOKEN "  \r\n");
    snprintf(text, sizeof text, "return { http_token_file = '%s' }", tok);
    c = load(text, err, sizeof err);
    CHECK_EQ_STR(c ? c->http_token : err, TOKEN);
    config_free(c);

    /* the environment and the file: not both */
    setenv("PATTERNTRACK_HTTP_TOKEN", TOKEN, 1);
    c = load(text, err, sizeof err);
    CHECK(c == NULL && strstr(err, "not both"));
    c = load("return {}", err, sizeof err);
    CHECK_EQ_STR(c ? c->http_token : err, TOKEN);
    config_free(c);
    unsetenv("PATTERNTRACK_HTTP_TOKEN");
    unlink(tok);

    /* a file with two tokens, an empty one, a missing one */
    temp_file(tok, TOKEN "\n" TOKEN "\n");
    snprintf(text, sizeof text, "return { http_token_file = '%s' }", tok);
    c = load(text, err, sizeof err);
    CHECK(c == NULL && strstr(err, "must hold one token") && !strstr(err, "s3cret"));
    unlink(tok);
    temp_file(tok, "\n");
    snprintf(text, sizeof text, "return { http_token_file = '%s' }", tok);
    c = load(text, err, sizeof err);
    CHECK(c == NULL && strstr(err, "must hold one token"));
    unlink(tok);
    c = load(text, err, sizeof err);
    CHECK(c == NULL && strstr(err, "No such file"));
}

int main(void)
{
    test_check();
    test_required();
    test_config();
    return check_done("test_auth");
}
