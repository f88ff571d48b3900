/* An LD_PRELOAD shim that makes name resolution slow, as a struggling DNS server would:
 * getaddrinfo() sleeps SLOW_DNS_MS (default 2000) for any host that is not a numeric
 * address, then answers "slow.test" as 127.0.0.1, names under ".invalid" as unknown, and
 * anything else as the real resolver does. Numeric hosts pass straight through, because hiredis and
 * curl call getaddrinfo even for them. Built as a shared library of its own, never linked into the
 * tests. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SLOW_NAME   "slow.test"
#define INVALID_TLD ".invalid"

typedef int getaddrinfo_fn(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static int is_numeric(const char *node)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, node, buf) == 1 || inet_pton(AF_INET6, node, buf) == 1;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static long delay_ms(void)
{
    const char *v = getenv("SLOW_DNS_MS");
    char *end;
    long ms = v != NULL ? strtol(v, &end, 10) : 2000;
    return ms >= 0 && ms <= 60000 ? ms : 2000;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    getaddrinfo_fn *real = (getaddrinfo_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
    if (real == NULL)
        return EAI_SYSTEM;
    if (node == NULL || is_numeric(node))
        return real(node, service, hints, res);
    pause_ms(delay_ms());
    if (strcasecmp(node, SLOW_NAME) == 0)
        node = "127.0.0.1";
    size_t n = strlen(node);
    if (n >= sizeof(INVALID_TLD) &&
        strcasecmp(node + n - (sizeof(INVALID_TLD) - 1), INVALID_TLD) == 0)
        return EAI_NONAME;
    return real(node, service, hints, res);
}
