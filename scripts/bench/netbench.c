// netbench: the one client (and the kernel side's servers) that
// scripts/bench.sh runs against netstackd on a TAP and against the Linux
// kernel over a veth pair, so both peers see the very same program.
//
//   netbench serve [BASE]                echo (BASE+7), discard (BASE+9) and
//                                        chargen (BASE+19) on every address,
//                                        IPv4 and IPv6, one epoll thread (the
//                                        kernel's side; under netstack-run, a
//                                        local program of the stack)
//   netbench send ADDR PORT MIB          write MIB MiB, shut down, wait for EOF
//   netbench recv ADDR PORT MIB          read MIB MiB, then close
//   netbench cc ADDR PORT COUNT          COUNT blocking connect + close cycles
//   netbench rr ADDR PORT COUNT          1-byte request/response on one connection
//   netbench hold ADDR PORT COUNT PID    COUNT connections, each with a 1-byte
//                                        exchange, all open at once; prints the
//                                        resident memory of PID while they are
//   netbench ping ADDR COUNT INTERVAL_US ICMP echo over a raw socket
//
// Every mode prints one line of `key=value` pairs for the script to read.
// All traffic goes to the address given, which the script has made inside a
// network namespace of its own.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "netbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, size_t count) {
    if (count == 0) return 0;
    qsort(values, count, sizeof *values, compare_doubles);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

/// Parses ADDR PORT into a sockaddr (IPv4 or IPv6 literal).
static socklen_t parse_endpoint(const char *address, int port, struct sockaddr_storage *out) {
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return sizeof *v6;
    }
    fprintf(stderr, "netbench: not an address: %s\n", address);
    exit(2);
}

static int connect_to(const struct sockaddr_storage *peer, socklen_t length) {
    int fd = socket(peer->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (const struct sockaddr *)peer, length) < 0) die("connect");
    return fd;
}

// MARK: Clients

static int run_send(const char *address, int port, long mib) {
    struct sockaddr_storage peer;
    socklen_t length = parse_endpoint(address, port, &peer);
    static char buffer[256 * 1024];
    memset(buffer, 'x', sizeof buffer);
    long long total = (long long)mib << 20, sent = 0;
    double start = now_seconds();
    int fd = connect_to(&peer, length);
    while (sent < total) {
        size_t chunk = total - sent < (long long)sizeof buffer ? (size_t)(total - sent) : sizeof buffer;
        ssize_t n = write(fd, buffer, chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        sent += n;
    }
    shutdown(fd, SHUT_WR);
    // The server closes once it has read everything: all bytes arrived.
    while (read(fd, buffer, sizeof buffer) > 0) {}
    double seconds = now_seconds() - start;
    close(fd);
    printf("bytes=%lld seconds=%.6f gbps=%.3f\n", sent, seconds, (double)sent * 8 / seconds / 1e9);
    return 0;
}

static int run_receive(const char *address, int port, long mib) {
    struct sockaddr_storage peer;
    socklen_t length = parse_endpoint(address, port, &peer);
    static char buffer[256 * 1024];
    long long total = (long long)mib << 20, received = 0;
    double start = now_seconds();
    int fd = connect_to(&peer, length);
    while (received < total) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (n == 0) {
            fprintf(stderr, "netbench: the peer closed after %lld bytes\n", received);
            return 1;
        }
        received += n;
    }
    double seconds = now_seconds() - start;
    close(fd);
    printf("bytes=%lld seconds=%.6f gbps=%.3f\n", received, seconds, (double)received * 8 / seconds / 1e9);
    return 0;
}

static int run_connect_close(const char *address, int port, long total) {
    struct sockaddr_storage peer;
    socklen_t length = parse_endpoint(address, port, &peer);
    size_t count = 0;
    double *latencies = malloc(total * sizeof *latencies);
    double start = now_seconds(), slowest = 0;
    while (count < (size_t)total) {
        double before = now_seconds();
        int fd = connect_to(&peer, length);
        double took = now_seconds() - before;
        close(fd);
        latencies[count++] = took;
        if (took > slowest) slowest = took;
    }
    double seconds = now_seconds() - start;
    printf("connections=%zu seconds=%.6f per_second=%.0f median_us=%.1f max_us=%.0f\n", count, seconds,
           count / seconds, median(latencies, count) * 1e6, slowest * 1e6);
    return 0;
}

static int run_request_response(const char *address, int port, long count) {
    struct sockaddr_storage peer;
    socklen_t length = parse_endpoint(address, port, &peer);
    int fd = connect_to(&peer, length);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    double *latencies = malloc(count * sizeof *latencies);
    char byte = 'r';
    // A few unmeasured rounds: connection setup and slow start are not the point.
    for (int i = 0; i < 100; i++) {
        if (write(fd, &byte, 1) != 1 || read(fd, &byte, 1) != 1) die("warm-up exchange");
    }
    double start = now_seconds();
    for (long i = 0; i < count; i++) {
        double before = now_seconds();
        if (write(fd, &byte, 1) != 1) die("write");
        ssize_t n;
        do { n = read(fd, &byte, 1); } while (n < 0 && errno == EINTR);
        if (n != 1) die("read");
        latencies[i] = now_seconds() - before;
    }
    double seconds = now_seconds() - start;
    close(fd);
    printf("transactions=%ld seconds=%.6f per_second=%.0f median_us=%.1f\n", count, seconds, count / seconds,
           median(latencies, count) * 1e6);
    return 0;
}

static long resident_kib(long pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *file = fopen(path, "r");
    if (!file) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, file)) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    }
    fclose(file);
    return kib;
}

static int run_hold(const char *address, int port, long count, long pid) {
    struct sockaddr_storage peer;
    socklen_t length = parse_endpoint(address, port, &peer);
    struct rlimit limit = {count + 64, count + 64};
    if (setrlimit(RLIMIT_NOFILE, &limit) < 0) die("setrlimit");
    int *fds = malloc(count * sizeof *fds);
    long before = resident_kib(pid);
    double start = now_seconds();
    long established = 0;
    struct timeval timeout = {5, 0};
    for (; established < count; established++) {
        int fd = connect_to(&peer, length);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        fds[established] = fd;
        char byte = 'h';
        if (write(fd, &byte, 1) != 1) break;
        ssize_t n;
        do { n = read(fd, &byte, 1); } while (n < 0 && errno == EINTR);
        if (n != 1) {
            fprintf(stderr, "netbench: connection %ld got no echo\n", established + 1);
            established++;
            break;
        }
    }
    double seconds = now_seconds() - start;
    usleep(200 * 1000);
    long held = resident_kib(pid);
    for (long i = 0; i < established; i++) close(fds[i]);
    if (established < count) return 1;
    printf("connections=%ld seconds=%.3f rss_before_kib=%ld rss_held_kib=%ld\n", count, seconds, before, held);
    return 0;
}

static uint16_t internet_checksum(const void *data, size_t length) {
    const uint8_t *bytes = data;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < length; i += 2) sum += (uint32_t)bytes[i] << 8 | bytes[i + 1];
    if (length % 2) sum += (uint32_t)bytes[length - 1] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return htons(~sum & 0xffff);
}

static int run_ping(const char *address, long count, long interval_us) {
    struct sockaddr_storage peer;
    socklen_t length = parse_endpoint(address, 0, &peer);
    int v6 = peer.ss_family == AF_INET6;
    int fd = socket(peer.ss_family, SOCK_RAW | SOCK_CLOEXEC, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
    if (fd < 0) die("raw socket");
    if (v6) {
        // Only echo replies (the kernel computes ICMPv6 checksums itself).
        struct icmp6_filter filter;
        ICMP6_FILTER_SETBLOCKALL(&filter);
        ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
        setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
    }
    double *latencies = malloc(count * sizeof *latencies);
    long answered = 0;
    uint16_t identifier = (uint16_t)getpid();
    for (long sequence = 0; sequence < count; sequence++) {
        uint8_t packet[64] = {0};
        packet[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
        memcpy(packet + 4, &(uint16_t){htons(identifier)}, 2);
        memcpy(packet + 6, &(uint16_t){htons((uint16_t)sequence)}, 2);
        for (int i = 8; i < 64; i++) packet[i] = (uint8_t)i;
        if (!v6) {
            uint16_t sum = internet_checksum(packet, sizeof packet);
            memcpy(packet + 2, &sum, 2);
        }
        double before = now_seconds();
        if (sendto(fd, packet, sizeof packet, 0, (struct sockaddr *)&peer, length) < 0) die("sendto");
        // Wait up to a second for the matching reply.
        for (;;) {
            double left = before + 1.0 - now_seconds();
            if (left <= 0) break;
            struct pollfd wait = {fd, POLLIN, 0};
            if (poll(&wait, 1, (int)(left * 1000) + 1) <= 0) continue;
            uint8_t reply[2048];
            ssize_t n = recv(fd, reply, sizeof reply, 0);
            if (n < 0) continue;
            uint8_t *icmp = reply;
            if (!v6) {
                size_t header = (reply[0] & 0x0f) * 4;
                if ((size_t)n < header + 8) continue;
                icmp = reply + header;
                n -= header;
            }
            uint16_t id, seq;
            memcpy(&id, icmp + 4, 2);
            memcpy(&seq, icmp + 6, 2);
            if (icmp[0] == (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY) && ntohs(id) == identifier &&
                ntohs(seq) == (uint16_t)sequence) {
                latencies[answered++] = now_seconds() - before;
                break;
            }
        }
        usleep(interval_us);
    }
    printf("sent=%ld answered=%ld median_us=%.1f\n", count, answered, median(latencies, answered) * 1e6);
    return answered == count ? 0 : 1;
}

// MARK: The kernel side's servers

enum service { ECHO, DISCARD, CHARGEN };

struct connection {
    int fd;
    enum service service;
    char pending[64 * 1024];  // echo: what still has to go back
    size_t pending_length;
};

static int listen_on(int port) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int zero = 0, one = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in6 local = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
    if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    return fd;
}

static int run_serve(int base) {
    signal(SIGPIPE, SIG_IGN);
    static char chargen[256 * 1024], sink[256 * 1024];
    for (size_t i = 0; i < sizeof chargen; i++) chargen[i] = (char)(32 + (i % 74) % 95);
    int listeners[3] = {listen_on(base + 7), listen_on(base + 9), listen_on(base + 19)};
    int poller = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < 3; i++) {
        struct epoll_event event = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        epoll_ctl(poller, EPOLL_CTL_ADD, listeners[i], &event);
    }
    printf("serving\n");
    fflush(stdout);
    struct epoll_event events[256];
    for (;;) {  // until the script ends the process
        int ready = epoll_wait(poller, events, 256, -1);
        for (int e = 0; e < ready; e++) {
            uint64_t tag = events[e].data.u64;
            if (tag < 3) {
                int fd;
                while ((fd = accept4(listeners[tag], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct connection *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->service = (enum service)tag;
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event event = {.events = EPOLLIN | (c->service == CHARGEN ? EPOLLOUT : 0),
                                                .data.ptr = c};
                    epoll_ctl(poller, EPOLL_CTL_ADD, fd, &event);
                }
                continue;
            }
            struct connection *c = events[e].data.ptr;
            int done = 0;
            if (c->service == CHARGEN) {
                if (events[e].events & (EPOLLERR | EPOLLHUP)) done = 1;
                while (!done) {
                    ssize_t n = write(c->fd, chargen, sizeof chargen);
                    if (n < 0) {
                        if (errno != EAGAIN) done = 1;
                        break;
                    }
                }
                if (!done && (events[e].events & EPOLLIN)) {
                    ssize_t n = read(c->fd, sink, sizeof sink);
                    if (n == 0 || (n < 0 && errno != EAGAIN)) done = 1;
                }
            } else {
                for (;;) {
                    if (c->pending_length > 0) {
                        ssize_t n = write(c->fd, c->pending, c->pending_length);
                        if (n < 0) {
                            if (errno != EAGAIN) done = 1;
                            break;
                        }
                        memmove(c->pending, c->pending + n, c->pending_length - n);
                        c->pending_length -= n;
                        if (c->pending_length > 0) break;
                    }
                    char *into = c->service == ECHO ? c->pending : sink;
                    size_t room = c->service == ECHO ? sizeof c->pending : sizeof sink;
                    ssize_t n = read(c->fd, into, room);
                    if (n == 0 || (n < 0 && errno != EAGAIN)) {
                        done = 1;
                        break;
                    }
                    if (n < 0) break;
                    if (c->service == ECHO) c->pending_length = n;
                }
                struct epoll_event event = {.events = EPOLLIN | (c->pending_length ? EPOLLOUT : 0), .data.ptr = c};
                if (!done) epoll_ctl(poller, EPOLL_CTL_MOD, c->fd, &event);
            }
            if (done) {
                epoll_ctl(poller, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c);
            }
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) return run_serve(argc >= 3 ? atoi(argv[2]) : 0);
    if (argc == 5 && strcmp(argv[1], "send") == 0) return run_send(argv[2], atoi(argv[3]), atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "recv") == 0) return run_receive(argv[2], atoi(argv[3]), atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "cc") == 0) return run_connect_close(argv[2], atoi(argv[3]), atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "rr") == 0) return run_request_response(argv[2], atoi(argv[3]), atol(argv[4]));
    if (argc == 6 && strcmp(argv[1], "hold") == 0)
        return run_hold(argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5]));
    if (argc == 5 && strcmp(argv[1], "ping") == 0) return run_ping(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: netbench serve [BASE] | send|recv ADDR PORT MIB | cc ADDR PORT COUNT | rr ADDR PORT COUNT\n"
                    "       | hold ADDR PORT COUNT PID | ping ADDR COUNT INTERVAL_US\n");
    return 2;
}
