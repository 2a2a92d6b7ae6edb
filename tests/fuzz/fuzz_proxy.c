/* fuzz_proxy.c - libFuzzer harness for the PROXY protocol parser and encoder
 * (src/proxy.c, src/netaddr.c).
 *
 * The input is the bytes a load balancer (or an attacker) sent first.
 * Checked for every input:
 *  - proxy_parse never reads outside buf[0..len) (exact-size heap copies)
 *    and returns a header length, PROXY_PARTIAL or PROXY_BAD (with a reason);
 *  - a header length is at most len and PROXY_MAX_HEADER, and a v1 header
 *    at most PROXY_V1_MAX bytes ending in CRLF;
 *  - prefix consistency: every proper prefix of an accepted header is
 *    PARTIAL, and a prefix that is BAD makes the whole input BAD;
 *  - an accepted header with addresses, encoded again as v1 and v2, parses
 *    back to the same addresses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy.h"

static int parse_copy(const uint8_t *data, size_t k, struct proxy_info *info)
{
    uint8_t *p = malloc(k ? k : 1);
    const char *why = NULL;
    CHECK(p != NULL);
    memcpy(p, data, k);
    int rc = proxy_parse(p, k, info, &why);
    free(p);
    CHECK(rc > 0 || rc == PROXY_PARTIAL || rc == PROXY_BAD);
    CHECK((rc == PROXY_BAD) == (why != NULL));
    return rc;
}

static void round_trip(const struct proxy_info *in)
{
    uint8_t out[PROXY_MAX_OUT];
    struct proxy_info back;
    for (int v = 1; v <= 2; v++) {
        struct proxy_out o = {.version = v,
                              .src = &in->src,
                              .dst = &in->dst,
                              .authority = "h",
                              .authority_len = 1,
                              .tls = v == 2,
                              .tls_version = "TLSv1.3",
                              .cert_verified = true,
                              .cn = "x"};
        int n = proxy_encode(&o, out, sizeof out);
        CHECK(n > 0);
        CHECK(proxy_parse(out, (size_t)n, &back, NULL) == n);
        CHECK(back.has_addr && back.version == v);
        CHECK(back.src.port == in->src.port && back.dst.port == in->dst.port);
        if (in->src.family == in->dst.family) {
            CHECK(netaddr_same_host(&back.src, &in->src));
            CHECK(netaddr_same_host(&back.dst, &in->dst));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_info info, part;
    int whole = parse_copy(data, size, &info);

    if (whole > 0) {
        CHECK((size_t)whole <= size && (size_t)whole <= PROXY_MAX_HEADER);
        if (info.version == 1)
            CHECK(whole <= PROXY_V1_MAX && data[whole - 2] == '\r' && data[whole - 1] == '\n');
        if (info.has_addr)
            round_trip(&info);
    }
    size_t cuts[4] = {size / 2, size ? size - 1 : 0, size ? data[0] % size : 0,
                      whole > 0 ? (size_t)whole - 1 : 0};
    for (size_t i = 0; i < 4; i++) {
        int rc = parse_copy(data, cuts[i], &part);
        if (whole > 0 && cuts[i] < (size_t)whole)
            CHECK(rc == PROXY_PARTIAL);
        if (rc == PROXY_BAD)
            CHECK(whole == PROXY_BAD);
        if (rc > 0)
            CHECK(rc == whole);
    }
    return 0;
}
