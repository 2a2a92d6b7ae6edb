/* http.c - incremental, bounded HTTP/1.x request-head parser.
 *
 * Stateless in the manner of picohttpparser: every call gets the whole buffer
 * received so far. Only the search for the blank line that ends the head is
 * incremental (it resumes near prev_len); the head is parsed once, when it is
 * complete. Nothing is allocated: the request points into the caller's buffer. */
#include "http.h"

#include <stdbool.h>
#include <string.h>

/* RFC 9110 tchar: "!#$%&'*+-.^_`|~" DIGIT ALPHA. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A byte allowed in a request-target: visible ASCII or obs-text, no space. */
static bool is_target_char(unsigned char c)
{
    return c > 0x20 && c != 0x7f;
}

/* A byte allowed in a field value: HTAB, SP, visible ASCII, obs-text. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* True when a[0..n) equals b[0..n) ignoring ASCII case. */
static bool ascii_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return false;
    return true;
}

/* Look for the end of the head ("\n\n" or "\n\r\n") in buf[from..limit).
 * Returns the head length (offset just past the blank line), or 0. */
static size_t find_head_end(const char *buf, size_t from, size_t limit)
{
    size_t i = from;
    while (i < limit) {
        const char *lf = memchr(buf + i, '\n', limit - i);
        if (lf == NULL)
            return 0;
        i = (size_t)(lf - buf);
        if (i + 1 < limit && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < limit && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
        i++;
    }
    return 0;
}

/* Cheap early rejection of obvious garbage (e.g. a TLS ClientHello on a plain
 * port) before the head is complete: the first bytes must be a method token
 * followed by a space. Looks at a bounded prefix so every call stays O(new). */
static bool plausible_start(const char *buf, size_t len)
{
    size_t n = len < 16 ? len : 16;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == ' ')
            return i > 0;
        if (!is_tchar(c))
            return false;
    }
    return true;
}

/* Parse "METHOD SP target SP HTTP/d.d" in line[0..len) (line end removed). */
static int parse_request_line(const char *line, size_t len, struct http_request *req)
{
    size_t i = 0;

    while (i < len && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i >= len || line[i] != ' ')
        return HTTP_BAD;
    req->method = line;
    req->method_len = i;
    i++;

    size_t t = i;
    while (i < len && is_target_char((unsigned char)line[i]))
        i++;
    if (i == t || i >= len || line[i] != ' ')
        return HTTP_BAD;
    req->target = line + t;
    req->target_len = i - t;
    i++;

    const char *v = line + i;
    if (len - i != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return HTTP_BAD;
    req->version_major = v[5] - '0';
    req->version_minor = v[7] - '0';

    const char *q = memchr(req->target, '?', req->target_len);
    req->path = req->target;
    if (q != NULL) {
        req->path_len = (size_t)(q - req->target);
        req->query = q + 1;
        req->query_len = req->target_len - req->path_len - 1;
    } else {
        req->path_len = req->target_len;
    }
    return 0;
}

/* Parse "name: value" in line[0..len) (line end removed) into h. */
static int parse_header_line(const char *line, size_t len, struct http_header *h)
{
    size_t i = 0;

    /* Obsolete line folding starts with SP/HTAB; it fails here too, since the
     * name would be empty or contain a non-token byte. */
    while (i < len && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i >= len || line[i] != ':')
        return HTTP_BAD;
    h->name = line;
    h->name_len = i;
    i++;

    while (i < len && is_ows(line[i]))
        i++;
    size_t end = len;
    while (end > i && is_ows(line[end - 1]))
        end--;
    for (size_t k = i; k < end; k++)
        if (!is_value_char((unsigned char)line[k]))
            return HTTP_BAD;
    h->value = line + i;
    h->value_len = end - i;
    return 0;
}

/* Parse the complete head buf[0..head_len) into req. */
static int parse_head(const char *buf, size_t head_len, struct http_request *req)
{
    size_t pos = 0;
    bool first = true;

    for (;;) {
        const char *lf = memchr(buf + pos, '\n', head_len - pos);
        if (lf == NULL)
            return HTTP_BAD; /* cannot happen: the head ends in a blank line */
        size_t eol = (size_t)(lf - buf);
        size_t next = eol + 1;
        if (eol > pos && buf[eol - 1] == '\r')
            eol--;
        const char *line = buf + pos;
        size_t len = eol - pos;
        pos = next;

        if (first) {
            if (parse_request_line(line, len, req) != 0)
                return HTTP_BAD;
            first = false;
            continue;
        }
        if (len == 0)
            return pos == head_len ? (int)head_len : HTTP_BAD;
        if (req->nheaders == HTTP_MAX_HEADERS)
            return HTTP_TOO_LARGE;
        if (parse_header_line(line, len, &req->headers[req->nheaders]) != 0)
            return HTTP_BAD;
        req->nheaders++;
    }
}

/* Contract in http.h. The head is at most HTTP_MAX_HEAD bytes: when none of
 * the first HTTP_MAX_HEAD bytes completes it, the answer is HTTP_TOO_LARGE. */
int http_parse_request(const char *buf, size_t len, size_t prev_len, struct http_request *req)
{
    memset(req, 0, offsetof(struct http_request, headers));
    req->nheaders = 0;

    if (!plausible_start(buf, len))
        return HTTP_BAD;

    size_t limit = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
    if (prev_len > len)
        prev_len = 0; /* not a previous length of this buffer: search it all */
    if (prev_len > limit)
        prev_len = limit;
    /* The terminator is at most 3 bytes, so it may have started 2 bytes
     * before what the previous call saw. */
    size_t from = prev_len >= 2 ? prev_len - 2 : 0;
    size_t head_len = find_head_end(buf, from, limit);
    if (head_len == 0)
        return len >= HTTP_MAX_HEAD ? HTTP_TOO_LARGE : HTTP_PARTIAL;
    return parse_head(buf, head_len, req);
}

/* Contract in http.h. */
const struct http_header *http_find_header(const struct http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && ascii_ieq(h->name, name, n))
            return h;
    }
    return NULL;
}

/* Contract in http.h. */
size_t http_count_headers(const struct http_request *req, const char *name)
{
    size_t n = strlen(name), count = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && ascii_ieq(h->name, name, n))
            count++;
    }
    return count;
}

/* Contract in http.h. Empty list elements are skipped. */
int http_list_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;

    while (i < len) {
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        while (start < end && is_ows(value[start]))
            start++;
        while (end > start && is_ows(value[end - 1]))
            end--;
        if (end - start == tlen && tlen > 0 && ascii_ieq(value + start, token, tlen))
            return 1;
        i++; /* skip the comma */
    }
    return 0;
}

/* Contract in http.h. Unknown codes get "Unknown". */
const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* The value of a hexadecimal digit, or -1. */
int http_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
