/* fuzz_offline.c - linked with -Wl,--wrap=getaddrinfo into the harnesses that
 * load configurations: fuzzed host names never reach DNS. */
#include <netdb.h>
#include <string.h>

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);

/* Names other than "localhost" are looked up as numeric addresses only. */
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    struct addrinfo h;

    if (node == NULL || strcmp(node, "localhost") == 0)
        return __real_getaddrinfo(node, service, hints, res);
    if (hints != NULL)
        h = *hints;
    else
        memset(&h, 0, sizeof h);
    h.ai_flags |= AI_NUMERICHOST;
    return __real_getaddrinfo(node, service, &h, res);
}
