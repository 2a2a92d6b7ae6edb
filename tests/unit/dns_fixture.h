/* dns_fixture.h - a DNS server for unit tests (tests/unit/dns_server.py,
 * python3-dnslib) answering from a zone file the test writes: names map to
 * {"A": [...], "AAAA": [...], "ttl": N, "delay": SECONDS}. Used as a cmocka
 * group setup/teardown (start_dns, stop_dns); `dns_addr` is its "IP:PORT" for
 * resolver_new(). Needs DNS_SERVER (the script's path) defined. */
#ifndef WSGATE_TEST_DNS_FIXTURE_H
#define WSGATE_TEST_DNS_FIXTURE_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dns_dir[256], dns_zone[300], dns_qlog[300];
static pid_t dns_pid;
static char dns_addr[64];

static void write_zone(const char *json)
{
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.new", dns_zone);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    assert_int_equal(rename(tmp, dns_zone), 0);
}

static int start_dns(void **state)
{
    int out[2];
    char port[16] = "";

    snprintf(dns_dir, sizeof dns_dir, "%s/wsgate-dns-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dns_dir));
    snprintf(dns_zone, sizeof dns_zone, "%s/zone.json", dns_dir);
    snprintf(dns_qlog, sizeof dns_qlog, "%s/queries", dns_dir);
    write_zone("{}");
    assert_int_equal(pipe(out), 0);
    dns_pid = fork();
    assert_true(dns_pid >= 0);
    if (dns_pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl("/usr/bin/python3", "python3", DNS_SERVER, dns_zone, dns_qlog, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    ssize_t n = read(out[0], port, sizeof port - 1);
    close(out[0]);
    assert_true(n > 0);
    port[n] = '\0';
    port[strcspn(port, "\n")] = '\0';
    snprintf(dns_addr, sizeof dns_addr, "127.0.0.1:%s", port);
    return 0;
}

static int stop_dns(void **state)
{
    char rm[300];

    kill(dns_pid, SIGKILL);
    waitpid(dns_pid, NULL, 0);
    snprintf(rm, sizeof rm, "rm -rf '%s'", dns_dir);
    return system(rm) == 0 ? 0 : -1;
}

#endif
