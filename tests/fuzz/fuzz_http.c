/* fuzz_http.c - libFuzzer harness for the request-head parser (src/http.c).
 *
 * The input is the bytes a client sent. Checked for every input:
 *  - http_parse_request never reads outside buf[0..len) (ASan: libFuzzer hands
 *    us an exact-size heap copy) and returns a head length or one of the
 *    HTTP_* codes;
 *  - a head length is at most len and HTTP_MAX_HEAD, and every pointer of the
 *    request lies inside the head;
 *  - prefix consistency: a prefix that already gives an answer other than
 *    HTTP_PARTIAL gives the same answer as the whole input;
 *  - resuming (prev_len = the length of a prefix that was partial) gives the
 *    same answer and the same request as parsing from scratch;
 *  - the header helpers agree with each other on the parsed request. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"

/* p[0..n) lies inside buf[0..len). */
static int inside(const char *buf, size_t len, const char *p, size_t n)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static int valid_rc(int rc)
{
    return rc > 0 || rc == HTTP_PARTIAL || rc == HTTP_BAD || rc == HTTP_TOO_LARGE;
}

/* Invariants of a successfully parsed head of length head in buf. */
static void check_request(const char *buf, size_t len, int head, const struct http_request *req)
{
    size_t h = (size_t)head;

    CHECK(h <= len && h <= HTTP_MAX_HEAD);
    CHECK(req->method_len > 0 && inside(buf, h, req->method, req->method_len));
    CHECK(req->target_len > 0 && inside(buf, h, req->target, req->target_len));
    CHECK(req->path == req->target && req->path_len <= req->target_len);
    if (req->query != NULL) {
        CHECK(req->target[req->path_len] == '?');
        CHECK(req->query == req->target + req->path_len + 1);
        CHECK(req->path_len + 1 + req->query_len == req->target_len);
    } else {
        CHECK(req->query_len == 0 && req->path_len == req->target_len);
    }
    CHECK(memchr(req->path, '?', req->path_len) == NULL);
    CHECK(req->version_major >= 0 && req->version_major <= 9);
    CHECK(req->version_minor >= 0 && req->version_minor <= 9);
    CHECK(req->nheaders <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *hd = &req->headers[i];
        CHECK(hd->name_len > 0 && inside(buf, h, hd->name, hd->name_len));
        CHECK(inside(buf, h, hd->value, hd->value_len));
        CHECK(memchr(hd->name, ':', hd->name_len) == NULL);
        CHECK(memchr(hd->value, '\n', hd->value_len) == NULL);
        if (hd->value_len > 0) {
            CHECK(hd->value[0] != ' ' && hd->value[0] != '\t');
            CHECK(hd->value[hd->value_len - 1] != ' ' && hd->value[hd->value_len - 1] != '\t');
        }

        /* The helpers, called with this header's name. */
        char name[HTTP_MAX_HEAD + 1];
        memcpy(name, hd->name, hd->name_len);
        name[hd->name_len] = '\0';
        const struct http_header *first = http_find_header(req, name);
        CHECK(first != NULL && first <= hd);
        size_t count = http_count_headers(req, name);
        CHECK(count >= 1 && count <= req->nheaders);

        /* Each comma-list element of the value is found as a token. */
        size_t k = 0;
        while (k < hd->value_len) {
            size_t start = k;
            while (k < hd->value_len && hd->value[k] != ',')
                k++;
            size_t end = k;
            while (start < end && (hd->value[start] == ' ' || hd->value[start] == '\t'))
                start++;
            while (end > start && (hd->value[end - 1] == ' ' || hd->value[end - 1] == '\t'))
                end--;
            if (end > start && memchr(hd->value + start, '\0', end - start) == NULL) {
                char tok[HTTP_MAX_HEAD + 1];
                memcpy(tok, hd->value + start, end - start);
                tok[end - start] = '\0';
                CHECK(http_list_has_token(hd->value, hd->value_len, tok));
            }
            k++;
        }
    }
    CHECK(http_find_header(req, "X-Fuzz-Never-Sent-\x01") == NULL);
    CHECK(http_reason(400) != NULL);
}

/* Two parses of the same buffer agree (fields are pointers into it). */
static void check_same(int rc1, const struct http_request *a, int rc2, const struct http_request *b)
{
    CHECK(rc1 == rc2);
    if (rc1 <= 0)
        return;
    CHECK(a->method == b->method && a->method_len == b->method_len);
    CHECK(a->target == b->target && a->target_len == b->target_len);
    CHECK(a->path_len == b->path_len && a->query == b->query && a->query_len == b->query_len);
    CHECK(a->version_major == b->version_major && a->version_minor == b->version_minor);
    CHECK(a->nheaders == b->nheaders);
    for (size_t i = 0; i < a->nheaders; i++) {
        CHECK(a->headers[i].name == b->headers[i].name);
        CHECK(a->headers[i].name_len == b->headers[i].name_len);
        CHECK(a->headers[i].value == b->headers[i].value);
        CHECK(a->headers[i].value_len == b->headers[i].value_len);
    }
}

static struct http_request whole_req, prefix_req, resumed_req;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;

    int whole = http_parse_request(buf, size, 0, &whole_req);
    CHECK(valid_rc(whole));
    if (whole > 0)
        check_request(buf, size, whole, &whole_req);
    if (size == 0)
        return 0;

    /* A few split points derived from the input, plus the byte-exact ones
     * around the end of the head. */
    size_t cuts[6];
    size_t ncuts = 0;
    cuts[ncuts++] = (size_t)data[0] % size;
    cuts[ncuts++] = (size_t)data[size - 1] * 31u % size;
    cuts[ncuts++] = size / 2;
    cuts[ncuts++] = size - 1;
    if (whole > 0) {
        cuts[ncuts++] = (size_t)whole - 1;
        cuts[ncuts++] = (size_t)whole >= 2 ? (size_t)whole - 2 : 0;
    }
    for (size_t i = 0; i < ncuts; i++) {
        size_t k = cuts[i];
        /* The prefix as a separate exact-size block, so reads past k are
         * caught. */
        char *prefix = malloc(k ? k : 1);
        CHECK(prefix != NULL);
        memcpy(prefix, buf, k);
        int part = http_parse_request(prefix, k, 0, &prefix_req);
        CHECK(valid_rc(part));
        if (part > 0)
            check_request(prefix, k, part, &prefix_req);
        free(prefix);
        if (part != HTTP_PARTIAL) {
            CHECK(part == whole);
            continue;
        }
        int resumed = http_parse_request(buf, size, k, &resumed_req);
        check_same(whole, &whole_req, resumed, &resumed_req);
        /* A prev_len that does not belong to this buffer is ignored. */
        resumed = http_parse_request(buf, k, size + 1 + k, &resumed_req);
        CHECK(resumed == HTTP_PARTIAL);
    }
    return 0;
}
