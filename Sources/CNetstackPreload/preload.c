// netstack-preload: sockets inside netstackd for unmodified programs.
//
// For each AF_INET or AF_INET6 TCP or UDP socket a program creates, the
// library opens a connection to netstackd's control socket and hands that
// connection back as the socket's descriptor. bind, listen, connect and the
// options are requests on it (docs/control-protocol.md); once a TCP socket
// is connected (connect returned, or accept made it), the connection is
// switched to a byte stream (`stream`), so read, write, send, recv, poll,
// epoll, sendfile and fork need no help. A listening socket keeps one
// accept request waiting, whose answer arrives when a connection waits, so
// the descriptor becomes readable exactly then. A bound UDP socket's
// connection carries datagram frames, which the data calls here write and
// read whole.
//
// Every other family and type (Unix sockets, netlink, raw sockets) goes to
// the kernel untouched. What is not supported fails with the errno a
// program can handle (docs/preload.md); nothing here aborts the program.
#define _GNU_SOURCE
#include "netstack_preload.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

// MARK: The real calls

static int (*real_socket)(int, int, int);
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_listen)(int, int);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static int (*real_getsockname)(int, struct sockaddr *, socklen_t *);
static int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static int (*real_shutdown)(int, int);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int (*real_sendmmsg)(int, struct mmsghdr *, unsigned int, int);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static int (*real_fcntl)(int, int, ...);
static int (*real_fcntl64)(int, int, ...);
static ssize_t (*real_writev)(int, const struct iovec *, int);

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void resolve(void) {
    real_socket = dlsym(RTLD_NEXT, "socket");
    real_bind = dlsym(RTLD_NEXT, "bind");
    real_listen = dlsym(RTLD_NEXT, "listen");
    real_accept4 = dlsym(RTLD_NEXT, "accept4");
    real_connect = dlsym(RTLD_NEXT, "connect");
    real_getsockname = dlsym(RTLD_NEXT, "getsockname");
    real_getpeername = dlsym(RTLD_NEXT, "getpeername");
    real_getsockopt = dlsym(RTLD_NEXT, "getsockopt");
    real_setsockopt = dlsym(RTLD_NEXT, "setsockopt");
    real_shutdown = dlsym(RTLD_NEXT, "shutdown");
    real_close = dlsym(RTLD_NEXT, "close");
    real_dup = dlsym(RTLD_NEXT, "dup");
    real_dup2 = dlsym(RTLD_NEXT, "dup2");
    real_dup3 = dlsym(RTLD_NEXT, "dup3");
    real_read = dlsym(RTLD_NEXT, "read");
    real_write = dlsym(RTLD_NEXT, "write");
    real_send = dlsym(RTLD_NEXT, "send");
    real_sendto = dlsym(RTLD_NEXT, "sendto");
    real_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
    real_sendmmsg = dlsym(RTLD_NEXT, "sendmmsg");
    real_recv = dlsym(RTLD_NEXT, "recv");
    real_recvfrom = dlsym(RTLD_NEXT, "recvfrom");
    real_recvmsg = dlsym(RTLD_NEXT, "recvmsg");
    real_readv = dlsym(RTLD_NEXT, "readv");
    real_fcntl = dlsym(RTLD_NEXT, "fcntl");
    real_fcntl64 = dlsym(RTLD_NEXT, "fcntl64");
    if (!real_fcntl64) real_fcntl64 = real_fcntl;
    real_writev = dlsym(RTLD_NEXT, "writev");
}

#define REAL(name) (pthread_once(&resolved, resolve), real_##name)

static int debugging = -1;

static void debug(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void debug(const char *format, ...) {
    if (debugging < 0) debugging = getenv("NETSTACK_DEBUG") != NULL;
    if (!debugging) return;
    int saved = errno;
    char line[512];
    va_list arguments;
    va_start(arguments, format);
    int n = vsnprintf(line, sizeof line - 1, format, arguments);
    va_end(arguments);
    if (n > (int)sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t ignored = REAL(write)(2, line, n);
    (void)ignored;
    errno = saved;
}

// MARK: Descriptors served here

/// CONNECTING: a non-blocking connect returned EINPROGRESS; the answer to
/// its request is still to be read.
enum state { OPEN, BOUND, LISTENING, CONNECTING, CONNECTED };

struct sock {
    int used;
    int domain;              // AF_INET or AF_INET6, as the program asked
    int type;                // SOCK_STREAM or SOCK_DGRAM
    enum state state;
    /// UDP: the connection carries datagram frames (it was bound).
    int framed;
    /// UDP: frames are read and written whole, one thread at a time; TCP:
    /// one thread reads a pending connect's answer.
    pthread_mutex_t io;
    /// The error a failed non-blocking connect left for SO_ERROR.
    int pending_error;
    int v6only;              // IPV6_V6ONLY (Linux's default: off)
    int nodelay, keepalive, reuseaddr, reuseport, receive_buffer, send_buffer;
    int keepidle, keepintvl, keepcnt;   // TCP_KEEPIDLE, _KEEPINTVL, _KEEPCNT
    struct linger linger;
    /// TCP, connected: the stream's key, for options set after connect
    /// (STREAM_OPTION on a connection of its own).
    uint64_t stream_key;
    /// Another descriptor may hold the same connection: a dup made here, or
    /// any entry older than the last fork (`fork_epoch` then differs).
    int shared;
    unsigned epoch;
    struct sockaddr_storage local, peer;
    socklen_t local_length, peer_length;
};

// Pages of entries, allocated as needed and never freed, so that a pointer
// taken under the lock stays valid (a closed descriptor's entry is reused).
#define PAGE 1024
#define PAGES 1024
static struct sock *pages[PAGES];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static int served;
/// Sockets whose data calls the library must see (UDP sockets, and TCP
/// sockets with a connect under way): while 0, read and write skip the table.
static int intercepted_sockets;

static int intercepted(const struct sock *entry) {
    return entry->type == SOCK_DGRAM || entry->state == CONNECTING;
}

/// Moves `entry` to `state`, keeping `intercepted_sockets` right.
static void set_state(struct sock *entry, enum state state) {
    int before = intercepted(entry);
    entry->state = state;
    int after = intercepted(entry);
    if (after > before) __atomic_add_fetch(&intercepted_sockets, 1, __ATOMIC_RELAXED);
    if (after < before) __atomic_sub_fetch(&intercepted_sockets, 1, __ATOMIC_RELAXED);
}

/// Counts forks, in parent and child alike: an entry claimed before the
/// last one shares its connection with the other process.
static unsigned fork_epoch;

static void before_fork(void) { pthread_mutex_lock(&table_lock); }
static void after_fork(void) {
    fork_epoch++;
    pthread_mutex_unlock(&table_lock);
}

/// The control socket's path, read once when the library loads: programs
/// that clear their environment before forking workers (nginx) keep it.
static char socket_path[108];

__attribute__((constructor)) static void initialize(void) {
    pthread_atfork(before_fork, after_fork, after_fork);
    const char *path = getenv("NETSTACK_SOCKET");
    strncpy(socket_path, path && *path ? path : NETSTACK_DEFAULT_SOCKET, sizeof socket_path - 1);
}

/// The entry of `fd` if the library serves it.
static struct sock *lookup(int fd) {
    if (fd < 0 || fd >= PAGE * PAGES) return NULL;
    pthread_mutex_lock(&table_lock);
    struct sock *page = pages[fd / PAGE];
    struct sock *entry = page && page[fd % PAGE].used ? &page[fd % PAGE] : NULL;
    pthread_mutex_unlock(&table_lock);
    return entry;
}

/// A fresh entry for `fd` (NULL past the table's reach).
static struct sock *claim(int fd, int domain, int type) {
    if (fd < 0 || fd >= PAGE * PAGES) return NULL;
    pthread_mutex_lock(&table_lock);
    if (!pages[fd / PAGE]) __atomic_store_n(&pages[fd / PAGE], calloc(PAGE, sizeof(struct sock)), __ATOMIC_RELEASE);
    struct sock *entry = pages[fd / PAGE] ? &pages[fd / PAGE][fd % PAGE] : NULL;
    if (entry) {
        if (entry->used) {
            served--;
            if (intercepted(entry)) __atomic_sub_fetch(&intercepted_sockets, 1, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&entry->used, 0, __ATOMIC_RELEASE);
        pthread_mutex_t io = entry->io;
        int had_lock = entry->domain != 0;
        memset(entry, 0, sizeof *entry);
        if (had_lock) entry->io = io; else pthread_mutex_init(&entry->io, NULL);
        entry->domain = domain;
        entry->type = type;
        entry->epoch = fork_epoch;
        // The stack's defaults (TCPSettings), as getsockopt reports them.
        entry->receive_buffer = type == SOCK_DGRAM ? 212992 : 256 * 1024;
        entry->send_buffer = type == SOCK_DGRAM ? 212992 : 1024 * 1024;
        entry->keepidle = 7200;
        entry->keepintvl = 75;
        entry->keepcnt = 9;
        served++;
        if (type == SOCK_DGRAM) __atomic_add_fetch(&intercepted_sockets, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&entry->used, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&table_lock);
    return entry;
}

static void release(int fd) {
    if (fd < 0 || fd >= PAGE * PAGES) return;
    pthread_mutex_lock(&table_lock);
    struct sock *page = pages[fd / PAGE];
    if (page && page[fd % PAGE].used) {
        __atomic_store_n(&page[fd % PAGE].used, 0, __ATOMIC_RELEASE);
        served--;
        if (intercepted(&page[fd % PAGE])) __atomic_sub_fetch(&intercepted_sockets, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&table_lock);
}

/// The entry of a UDP socket served here, or of a TCP socket whose connect
/// is under way, without taking the table's lock (read and write go through
/// this for every descriptor of the program).
static struct sock *intercepted_lookup(int fd) {
    if (__atomic_load_n(&intercepted_sockets, __ATOMIC_RELAXED) == 0) return NULL;
    if (fd < 0 || fd >= PAGE * PAGES) return NULL;
    struct sock *page = __atomic_load_n(&pages[fd / PAGE], __ATOMIC_ACQUIRE);
    if (!page) return NULL;
    struct sock *entry = &page[fd % PAGE];
    return __atomic_load_n(&entry->used, __ATOMIC_ACQUIRE) && intercepted(entry) ? entry : NULL;
}

/// Makes `to` serve the same socket as `from` (after dup2 and friends).
static void copy_entry(int from, int to) {
    struct sock *source = lookup(from);
    if (!source) {
        release(to);
        return;
    }
    struct sock saved = *source;
    struct sock *target = claim(to, saved.domain, saved.type);
    if (target) {
        pthread_mutex_t io = target->io;
        int before = intercepted(target);
        *target = saved;
        target->io = io;
        target->shared = 1;
        source->shared = 1;
        if (intercepted(target) > before) __atomic_add_fetch(&intercepted_sockets, 1, __ATOMIC_RELAXED);
    }
}

int netstack_preload_socket_count(void) {
    pthread_mutex_lock(&table_lock);
    int count = served;
    pthread_mutex_unlock(&table_lock);
    return count;
}

// MARK: The control protocol

/// docs/control-protocol.md; 2: a TCP stream starts with a marker byte;
/// 3: a stream has a key, and its options can be set through it.
enum { PROTOCOL_VERSION = 3 };
enum {
    HELLO = 0x01, OPEN_SOCKET = 0x03, BIND = 0x10, LISTEN = 0x11, CONNECT = 0x13,
    GET_ENDPOINTS = 0x19, SET_OPTION = 0x1A, STREAM = 0x1B, ACCEPT_STREAM = 0x1C, STREAM_OPTION = 0x1E,
    DONE = 0x80, WELCOME = 0x81, ENDPOINTS = 0x90, ACCEPTED_STREAM = 0x94, FAILURE = 0xFF,
};
enum {
    OPTION_NO_DELAY = 1, OPTION_KEEPALIVE = 2, OPTION_RECEIVE_BUFFER = 3, OPTION_SEND_BUFFER = 4, OPTION_V6_ONLY = 5,
    OPTION_KEEPALIVE_IDLE = 7, OPTION_KEEPALIVE_INTERVAL = 8, OPTION_KEEPALIVE_COUNT = 9,
    OPTION_REUSE_ADDRESS = 6, OPTION_RESET_ON_CLOSE = 10,
};

/// A message being built or read: type, then body.
struct message {
    uint8_t bytes[600];
    size_t length;
};

static void put8(struct message *m, uint8_t v) {
    if (m->length < sizeof m->bytes) m->bytes[m->length++] = v;
}
static void put16(struct message *m, uint16_t v) { put8(m, v >> 8); put8(m, v & 0xff); }
static void put32(struct message *m, uint32_t v) { put16(m, v >> 16); put16(m, v & 0xffff); }
static void put64(struct message *m, uint64_t v) { put32(m, v >> 32); put32(m, v & 0xffffffff); }

/// The u64 at `at` in a message's bytes (0 when it is too short).
static uint64_t get64(const struct message *m, size_t at) {
    uint64_t value = 0;
    for (size_t i = 0; i < 8; i++) value = value << 8 | (at + i < m->length ? m->bytes[at + i] : 0);
    return at + 8 <= m->length ? value : 0;
}

/// Appends an endpoint (family byte, address, port); IPv4-mapped IPv6
/// addresses go as IPv4 when `unmap`.
static int put_endpoint(struct message *m, const struct sockaddr *address, socklen_t length, int unmap) {
    if (address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        put8(m, 4);
        const uint8_t *bytes = (const uint8_t *)&v4->sin_addr;
        for (int i = 0; i < 4; i++) put8(m, bytes[i]);
        put16(m, ntohs(v4->sin_port));
        return 0;
    }
    if (address->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        const uint8_t *bytes = (const uint8_t *)&v6->sin6_addr;
        if (unmap && IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
            put8(m, 4);
            for (int i = 12; i < 16; i++) put8(m, bytes[i]);
        } else {
            put8(m, 6);
            for (int i = 0; i < 16; i++) put8(m, bytes[i]);
        }
        put16(m, ntohs(v6->sin6_port));
        return 0;
    }
    errno = address->sa_family == AF_INET || address->sa_family == AF_INET6 ? EINVAL : EAFNOSUPPORT;
    return -1;
}

/// Reads an optional endpoint at `*at` into `out` as a socket address of
/// `domain` (IPv4 ones mapped for AF_INET6). Returns 1 if one was there.
static int get_endpoint(const struct message *m, size_t *at, int domain, struct sockaddr_storage *out,
                        socklen_t *length) {
    if (*at >= m->length) return 0;
    uint8_t family = m->bytes[(*at)++];
    if (family == 0) return 0;
    size_t size = family == 4 ? 4 : 16;
    if (*at + size + 2 > m->length) return 0;
    const uint8_t *address = &m->bytes[*at];
    uint16_t port = (uint16_t)(m->bytes[*at + size] << 8 | m->bytes[*at + size + 1]);
    *at += size + 2;
    memset(out, 0, sizeof *out);
    if (domain == AF_INET6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        uint8_t *bytes = (uint8_t *)&v6->sin6_addr;
        if (family == 4) {
            bytes[10] = bytes[11] = 0xff;
            memcpy(bytes + 12, address, 4);
        } else {
            memcpy(bytes, address, 16);
        }
        *length = sizeof *v6;
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)out;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        memcpy(&v4->sin_addr, address, 4);
        *length = sizeof *v4;
    }
    return 1;
}

/// Waits until `fd` is ready for `events` (the library's own exchanges
/// block even on a descriptor the program made non-blocking).
static void await_ready(int fd, short events) {
    struct pollfd ready = {fd, events, 0};
    while (poll(&ready, 1, -1) < 0 && errno == EINTR) {}
}

static int write_all(int fd, const void *buffer, size_t length) {
    const uint8_t *bytes = buffer;
    while (length > 0) {
        ssize_t n = REAL(send)(fd, bytes, length, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            await_ready(fd, POLLOUT);
            continue;
        }
        if (n <= 0) {
            errno = ECONNRESET;
            return -1;
        }
        bytes += n;
        length -= n;
    }
    return 0;
}

static int read_all(int fd, void *buffer, size_t length) {
    uint8_t *bytes = buffer;
    while (length > 0) {
        ssize_t n = REAL(recv)(fd, bytes, length, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            await_ready(fd, POLLIN);
            continue;
        }
        if (n <= 0) {
            // netstackd went away (stopped or restarted).
            errno = ECONNRESET;
            return -1;
        }
        bytes += n;
        length -= n;
    }
    return 0;
}

/// Sends the messages in `m` (several may be pipelined), each framed.
static int send_messages(int fd, struct message *messages, int count) {
    uint8_t frames[2048];
    size_t used = 0;
    for (int i = 0; i < count; i++) {
        if (used + 4 + messages[i].length > sizeof frames) return errno = EMSGSIZE, -1;
        uint32_t length = (uint32_t)messages[i].length;
        frames[used++] = length >> 24;
        frames[used++] = length >> 16;
        frames[used++] = length >> 8;
        frames[used++] = length;
        memcpy(frames + used, messages[i].bytes, messages[i].length);
        used += messages[i].length;
    }
    return write_all(fd, frames, used);
}

static int send_message(int fd, struct message *m) { return send_messages(fd, m, 1); }

/// The errno a failure answer stands for.
static int failure_errno(const struct message *m) {
    if (m->length < 7) return EIO;
    uint16_t code = (uint16_t)(m->bytes[1] << 8 | m->bytes[2]);
    uint32_t number = (uint32_t)m->bytes[3] << 24 | (uint32_t)m->bytes[4] << 16 | (uint32_t)m->bytes[5] << 8 | m->bytes[6];
    if (number) return (int)number;
    switch (code) {
    case 5: return EACCES;       // notPermitted
    case 6: return EINVAL;       // wrongState
    case 7: return ECONNABORTED; // unknownToken
    default: return EIO;
    }
}

/// Reads one answer into `m`; -1 (errno set) if it is a failure, if it is
/// not `expected`, or if the connection ended.
static int read_answer(int fd, struct message *m, uint8_t expected) {
    uint8_t prefix[4];
    if (read_all(fd, prefix, 4) < 0) return -1;
    size_t length = (size_t)prefix[0] << 24 | (size_t)prefix[1] << 16 | (size_t)prefix[2] << 8 | prefix[3];
    if (length == 0 || length > sizeof m->bytes) {
        errno = EPROTO;
        return -1;
    }
    if (read_all(fd, m->bytes, length) < 0) return -1;
    m->length = length;
    if (m->bytes[0] == FAILURE) {
        errno = failure_errno(m);
        debug("netstack-preload: failure %d: %.*s", errno, m->length > 9 ? (int)m->length - 9 : 0,
              m->length > 9 ? (const char *)m->bytes + 9 : "");
        return -1;
    }
    if (m->bytes[0] != expected) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

static struct message request(uint8_t type) {
    struct message m = {.length = 0};
    put8(&m, type);
    return m;
}

static const char *control_path(void) {
    return socket_path[0] ? socket_path : NETSTACK_DEFAULT_SOCKET;
}

/// A new control connection that has said hello, with `then` sent in the
/// same write (its answer is the caller's to read); -1 with ECONNREFUSED
/// when netstackd does not answer.
static int control_connect_then(struct message then) {
    int fd = REAL(socket)(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, control_path(), sizeof address.sun_path - 1);
    if (REAL(connect)(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        debug("netstack-preload: cannot reach %s: %s", address.sun_path, strerror(errno));
        REAL(close)(fd);
        errno = ECONNREFUSED;
        return -1;
    }
    struct message messages[2] = {request(HELLO), then}, answer;
    put16(&messages[0], PROTOCOL_VERSION);
    if (send_messages(fd, messages, 2) < 0 || read_answer(fd, &answer, WELCOME) < 0) {
        int saved = errno == ECONNRESET ? ECONNREFUSED : errno;
        REAL(close)(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/// Sends `type` with no body and reads `done`.
static int simple(int fd, struct message m) {
    struct message answer;
    if (send_message(fd, &m) < 0) return -1;
    return read_answer(fd, &answer, DONE);
}

static int set_option(int fd, uint8_t option, uint64_t value) {
    struct message m = request(SET_OPTION);
    put8(&m, option);
    put64(&m, value);
    return simple(fd, m);
}

/// Sets an option of a connected TCP socket, whose own connection carries
/// its bytes: through a control connection of its own, naming the socket by
/// its stream's key (docs/control-protocol.md, streamOption).
static int stream_option(const struct sock *entry, uint8_t option, uint64_t value) {
    if (!entry->stream_key) return errno = ENOTCONN, -1;
    struct message m = request(STREAM_OPTION), answer;
    put64(&m, entry->stream_key);
    put8(&m, option);
    put64(&m, value);
    int control = control_connect_then(m);
    if (control < 0) return -1;
    int result = read_answer(control, &answer, DONE);
    int saved = errno;
    REAL(close)(control);
    errno = saved;
    return result;
}

/// Applies the options recorded on a socket that is not connected yet.
static void apply_options(int fd, const struct sock *entry) {
    if (entry->nodelay) set_option(fd, OPTION_NO_DELAY, 1);
    if (entry->keepalive) set_option(fd, OPTION_KEEPALIVE, 1);
    if (entry->keepidle != 7200) set_option(fd, OPTION_KEEPALIVE_IDLE, (uint64_t)entry->keepidle);
    if (entry->keepintvl != 75) set_option(fd, OPTION_KEEPALIVE_INTERVAL, (uint64_t)entry->keepintvl);
    if (entry->keepcnt != 9) set_option(fd, OPTION_KEEPALIVE_COUNT, (uint64_t)entry->keepcnt);
}

/// Records the local and remote endpoints of an answer, from `at` (1 for
/// ENDPOINTS, 9 for ACCEPTED_STREAM, after its key).
static void record_endpoints(const struct message *answer, size_t at, struct sock *entry) {
    if (!get_endpoint(answer, &at, entry->domain, &entry->local, &entry->local_length)) entry->local_length = 0;
    if (!get_endpoint(answer, &at, entry->domain, &entry->peer, &entry->peer_length)) entry->peer_length = 0;
}

/// Asks for the endpoints and the byte stream (pipelined) and records the
/// endpoints: the last step of connect.
static int become_stream(int fd, struct sock *entry) {
    struct message messages[2] = {request(GET_ENDPOINTS), request(STREAM)}, answer;
    if (send_messages(fd, messages, 2) < 0) return -1;
    if (read_answer(fd, &answer, ENDPOINTS) < 0) return -1;
    record_endpoints(&answer, 1, entry);
    if (read_answer(fd, &answer, DONE) < 0) return -1;
    entry->stream_key = get64(&answer, 1);
    // The stream's marker: the byte the daemon keeps unread, so that its
    // end closing on a reset reads here as ECONNRESET (docs/control-protocol.md).
    static const char marker = 0;
    if (REAL(send)(fd, &marker, 1, MSG_NOSIGNAL) != 1) return -1;
    set_state(entry, CONNECTED);
    return 0;
}

/// Reads the answer to a connect under way (waiting for it) and makes the
/// socket a byte stream; a failure is left in `pending_error` for SO_ERROR
/// as well as returned. 0 once connected.
static int finish_connect(int fd, struct sock *entry) {
    pthread_mutex_lock(&entry->io);
    int result = 0;
    if (entry->state == CONNECTING) {
        struct message answer;
        if (read_answer(fd, &answer, DONE) < 0 || become_stream(fd, entry) < 0) {
            entry->pending_error = errno;
            set_state(entry, OPEN);
            result = -1;
        }
    } else if (entry->state != CONNECTED) {
        errno = entry->pending_error ? entry->pending_error : ENOTCONN;
        result = -1;
    }
    pthread_mutex_unlock(&entry->io);
    return result;
}

/// Makes `fd` non-blocking and close-on-exec as `flags` (SOCK_*) ask.
static void apply_flags(int fd, int flags) {
    int status = fcntl(fd, F_GETFL);
    if (flags & SOCK_NONBLOCK) fcntl(fd, F_SETFL, status | O_NONBLOCK);
    // Control connections are made close-on-exec; undo it when not asked.
    if (!(flags & SOCK_CLOEXEC)) fcntl(fd, F_SETFD, 0);
}

// MARK: Datagram frames (UDP sockets once bound; docs/preload.md)

enum { FRAME_DATAGRAM = 0, FRAME_CONNECT = 1 };

/// Switches a bound UDP socket's connection to datagram frames.
static int go_framed(int fd, struct sock *entry) {
    if (entry->framed) return 0;
    if (simple(fd, request(STREAM)) < 0) return -1;
    entry->framed = 1;
    return 0;
}

/// Binds an unbound UDP socket to the wildcard address and an ephemeral
/// port (what the kernel does on a first send), then frames.
static int ensure_framed(int fd, struct sock *entry) {
    if (entry->framed) return 0;
    struct sockaddr_storage any = {.ss_family = (sa_family_t)entry->domain};
    socklen_t length = entry->domain == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return bind(fd, (struct sockaddr *)&any, length);
}

/// Writes one frame: length, type, endpoint (or 0), then `data`.
static int write_frame(int fd, uint8_t type, const struct sockaddr *address, socklen_t address_length,
                       const struct iovec *pieces, size_t count, size_t total) {
    struct message head = {.length = 0};
    put32(&head, 0);
    put8(&head, type);
    if (address) {
        // IPv4-mapped peers of an IPv6 socket go as IPv4 (its IPv4 companion).
        if (put_endpoint(&head, address, address_length, 1) < 0) return -1;
    } else {
        put8(&head, 0);
    }
    uint32_t length = (uint32_t)(head.length - 4 + total);
    head.bytes[0] = length >> 24;
    head.bytes[1] = length >> 16;
    head.bytes[2] = length >> 8;
    head.bytes[3] = length;
    if (write_all(fd, head.bytes, head.length) < 0) return -1;
    for (size_t i = 0; i < count; i++) {
        if (pieces[i].iov_len && write_all(fd, pieces[i].iov_base, pieces[i].iov_len) < 0) return -1;
    }
    return 0;
}

static ssize_t datagram_send(int fd, struct sock *entry, const struct iovec *pieces, size_t count,
                             const struct sockaddr *address, socklen_t address_length) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += pieces[i].iov_len;
    if (total > 65507) return errno = EMSGSIZE, -1;
    if (address && address->sa_family != entry->domain) return errno = EAFNOSUPPORT, -1;
    if (!address && entry->peer_length == 0) return errno = EDESTADDRREQ, -1;
    pthread_mutex_lock(&entry->io);
    int result = ensure_framed(fd, entry);
    if (result == 0) result = write_frame(fd, FRAME_DATAGRAM, address, address_length, pieces, count, total);
    pthread_mutex_unlock(&entry->io);
    return result < 0 ? -1 : (ssize_t)total;
}

/// Whether a whole frame waits (for a receive that must not block).
static int frame_waiting(int fd) {
    uint8_t prefix[4];
    ssize_t n = REAL(recv)(fd, prefix, 4, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return 1;   // the end: the read reports it
    if (n < 4) return 0;
    size_t length = (size_t)prefix[0] << 24 | (size_t)prefix[1] << 16 | (size_t)prefix[2] << 8 | prefix[3];
    uint8_t *peek = malloc(4 + length);
    if (!peek) return 0;
    n = REAL(recv)(fd, peek, 4 + length, MSG_PEEK | MSG_DONTWAIT);
    free(peek);
    return n >= 0 && (size_t)n >= 4 + length;
}

/// Copies the datagram of a frame (type, endpoint, data; the length prefix
/// left off) into the pieces and its source into `address`; the datagram's
/// whole size.
static ssize_t deliver_frame(const struct sock *entry, const uint8_t *frame, size_t length, const struct iovec *pieces,
                             size_t count, struct sockaddr *address, socklen_t *address_length, int *truncated) {
    struct message endpoint = {.length = length - 1 < sizeof endpoint.bytes ? length - 1 : sizeof endpoint.bytes};
    memcpy(endpoint.bytes, frame + 1, endpoint.length);
    size_t at = 0;
    struct sockaddr_storage source;
    socklen_t source_length = 0;
    get_endpoint(&endpoint, &at, entry->domain, &source, &source_length);
    size_t size = length - 1 - at, copied = 0;
    for (size_t i = 0; i < count && copied < size; i++) {
        size_t piece = size - copied < pieces[i].iov_len ? size - copied : pieces[i].iov_len;
        memcpy(pieces[i].iov_base, frame + 1 + at + copied, piece);
        copied += piece;
    }
    if (truncated) *truncated = copied < size;
    if (address && address_length) {
        socklen_t room = source_length < *address_length ? source_length : *address_length;
        memcpy(address, &source, room);
        *address_length = source_length;
    }
    return (ssize_t)size;
}

/// Reads the next datagram frame into the pieces; its size (the whole
/// datagram, even when cut to fit) and `*truncated`. With MSG_PEEK the frame
/// stays where it is (peeked in the connection), so the descriptor stays
/// readable, as a kernel socket's does.
static ssize_t datagram_receive(int fd, struct sock *entry, const struct iovec *pieces, size_t count, int flags,
                                struct sockaddr *address, socklen_t *address_length, int *truncated) {
    pthread_mutex_lock(&entry->io);
    ssize_t result = -1;
    uint8_t *frame = NULL;
    if (ensure_framed(fd, entry) < 0) goto done;
    int nonblocking = (flags & MSG_DONTWAIT) || (fcntl(fd, F_GETFL) & O_NONBLOCK);
    for (;;) {
        if (!frame_waiting(fd)) {
            if (nonblocking) {
                errno = EAGAIN;
                goto done;
            }
            struct pollfd ready = {fd, POLLIN, 0};
            if (poll(&ready, 1, -1) < 0 && errno == EINTR) goto done;
            continue;
        }
        uint8_t prefix[4];
        ssize_t n = REAL(recv)(fd, prefix, 4, MSG_PEEK);
        if (n == 0) {
            errno = ECONNRESET;   // netstackd went away
            goto done;
        }
        if (n < 4) continue;
        size_t length = (size_t)prefix[0] << 24 | (size_t)prefix[1] << 16 | (size_t)prefix[2] << 8 | prefix[3];
        if (length < 2 || length > 65535 + 24) {
            errno = EPROTO;
            goto done;
        }
        frame = malloc(4 + length);
        if (!frame) {
            errno = ENOMEM;
            goto done;
        }
        // The whole frame is there (frame_waiting): one call takes it.
        n = REAL(recv)(fd, frame, 4 + length, MSG_PEEK);
        if (n < (ssize_t)(4 + length)) goto done;
        int peek = (flags & MSG_PEEK) && frame[4] == FRAME_DATAGRAM;
        if (!peek && REAL(recv)(fd, frame, 4 + length, 0) < (ssize_t)(4 + length)) goto done;
        if (frame[4] != FRAME_DATAGRAM) {
            free(frame);
            frame = NULL;
            continue;
        }
        result = deliver_frame(entry, frame + 4, length, pieces, count, address, address_length, truncated);
        break;
    }
done:
    free(frame);
    pthread_mutex_unlock(&entry->io);
    return result;
}

static int datagram_connect(int fd, struct sock *entry, const struct sockaddr *address, socklen_t length) {
    if (!address || address->sa_family == AF_UNSPEC) return errno = EOPNOTSUPP, -1;   // dissolving is not served
    if (address->sa_family != entry->domain) return errno = EAFNOSUPPORT, -1;
    if (!entry->framed) {
        if (entry->domain == AF_INET6 && !entry->v6only && entry->state == OPEN &&
            set_option(fd, OPTION_V6_ONLY, 0) < 0) {
            return -1;
        }
        struct message m = request(CONNECT), answer;
        if (put_endpoint(&m, address, length, 1) < 0) return -1;
        if (send_message(fd, &m) < 0 || read_answer(fd, &answer, DONE) < 0) return -1;
        struct message get = request(GET_ENDPOINTS);
        if (send_message(fd, &get) < 0 || read_answer(fd, &answer, ENDPOINTS) < 0) return -1;
        size_t at = 1;
        get_endpoint(&answer, &at, entry->domain, &entry->local, &entry->local_length);
        entry->state = BOUND;
        if (go_framed(fd, entry) < 0) return -1;
    } else {
        pthread_mutex_lock(&entry->io);
        int result = write_frame(fd, FRAME_CONNECT, address, length, NULL, 0, 0);
        pthread_mutex_unlock(&entry->io);
        if (result < 0) return -1;
    }
    memcpy(&entry->peer, address, length < sizeof entry->peer ? length : sizeof entry->peer);
    entry->peer_length = length;
    return 0;
}

// MARK: The socket calls

int socket(int domain, int type, int protocol) {
    int kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    int stream = kind == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP);
    int datagram = kind == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP);
    if ((domain != AF_INET && domain != AF_INET6) || !(stream || datagram)) {
        return REAL(socket)(domain, type, protocol);
    }
    struct message open = request(OPEN_SOCKET), opened;
    put8(&open, domain == AF_INET ? 4 : 6);
    put8(&open, stream ? 1 : 2);
    // Hello and the open in one write: one round trip.
    int fd = control_connect_then(open);
    if (fd < 0) return -1;
    if (read_answer(fd, &opened, DONE) < 0 || !claim(fd, domain, kind)) {
        int saved = errno ? errno : EMFILE;
        REAL(close)(fd);
        errno = saved;
        return -1;
    }
    apply_flags(fd, type);
    debug("netstack-preload: socket %d (IPv%d %s)", fd, domain == AF_INET ? 4 : 6, stream ? "TCP" : "UDP");
    return fd;
}

int bind(int fd, const struct sockaddr *address, socklen_t length) {
    struct sock *entry = lookup(fd);
    if (!entry) return REAL(bind)(fd, address, length);
    if (entry->state != OPEN) return errno = EINVAL, -1;
    if (!address || address->sa_family != entry->domain) return errno = EAFNOSUPPORT, -1;
    // An IPv6 UDP socket with IPV6_V6ONLY off reaches IPv4 peers too.
    if (entry->type == SOCK_DGRAM && entry->domain == AF_INET6 && !entry->v6only) {
        if (set_option(fd, OPTION_V6_ONLY, 0) < 0) return -1;
        if (entry->reuseaddr && set_option(fd, OPTION_REUSE_ADDRESS, 1) < 0) return -1;
    }
    struct message m = request(BIND), answer;
    if (put_endpoint(&m, address, length, 0) < 0) return -1;
    if (send_message(fd, &m) < 0 || read_answer(fd, &answer, ENDPOINTS) < 0) return -1;
    size_t at = 1;
    get_endpoint(&answer, &at, entry->domain, &entry->local, &entry->local_length);
    entry->state = BOUND;
    // A bound UDP socket's connection carries its datagrams from now on.
    return entry->type == SOCK_DGRAM ? go_framed(fd, entry) : 0;
}

/// The accept requests a listening socket keeps waiting: their answers are
/// what make the descriptor readable. Each asks for a connection as a byte
/// stream at once: the answer carries the endpoints and, attached, the
/// descriptor that is the accepted socket. Several wait at a time, so that
/// the daemon hands over the next connection while the program takes the
/// last one, not a round trip after it: with one, a client that connects as
/// fast as the stack completes handshakes outran the program's accepts
/// until the backlog overflowed.
enum { ACCEPTS_AHEAD = 8 };

static int post_accepts(int fd, int count) {
    struct message messages[ACCEPTS_AHEAD];
    if (count > ACCEPTS_AHEAD) count = ACCEPTS_AHEAD;
    for (int i = 0; i < count; i++) messages[i] = request(ACCEPT_STREAM);
    return send_messages(fd, messages, count);
}

/// One more accept request, for the answer just taken.
static int post_accept(int fd) { return post_accepts(fd, 1); }

int listen(int fd, int backlog) {
    struct sock *entry = lookup(fd);
    if (!entry) return REAL(listen)(fd, backlog);
    if (entry->type == SOCK_DGRAM) return errno = EOPNOTSUPP, -1;
    if (entry->state == LISTENING) return 0;
    if (entry->state == CONNECTED) return errno = EINVAL, -1;
    // An IPv6 socket with IPV6_V6ONLY off takes IPv4 connections too.
    if (entry->domain == AF_INET6 && !entry->v6only && set_option(fd, OPTION_V6_ONLY, 0) < 0) return -1;
    apply_options(fd, entry);
    struct message m = request(LISTEN), answer;
    put32(&m, backlog <= 0 ? 1 : (uint32_t)backlog);
    if (simple(fd, m) < 0) return -1;
    // Unbound before: the daemon picked a port.
    struct message get = request(GET_ENDPOINTS);
    if (send_message(fd, &get) < 0 || read_answer(fd, &answer, ENDPOINTS) < 0) return -1;
    size_t at = 1;
    get_endpoint(&answer, &at, entry->domain, &entry->local, &entry->local_length);
    entry->state = LISTENING;
    return post_accepts(fd, ACCEPTS_AHEAD);
}

/// Whether a whole answer is waiting on `fd` (for non-blocking accept).
static int answer_waiting(int fd) {
    uint8_t peek[sizeof(struct message) + 4];
    ssize_t n = REAL(recv)(fd, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT);
    if (n < 4) return n == 0;   // 0: the daemon went away; accept reports it
    size_t length = (size_t)peek[0] << 24 | (size_t)peek[1] << 16 | (size_t)peek[2] << 8 | peek[3];
    return (size_t)n >= 4 + length;
}

/// Takes a whole answer if one waits, without blocking: 1 with it in `m` and
/// the descriptor that came with it in `*passed` (-1 if none), 0 if none
/// (or another process took it first), -1 for a failure answer or an ended
/// connection (errno set).
static int take_waiting_answer(int fd, struct message *m, uint8_t expected, int *passed) {
    *passed = -1;
    if (!answer_waiting(fd)) return 0;
    uint8_t frame[sizeof m->bytes + 4];
    ssize_t n = REAL(recv)(fd, frame, 4, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return errno = ECONNRESET, -1;
    if (n < 4) return 0;
    size_t length = (size_t)frame[0] << 24 | (size_t)frame[1] << 16 | (size_t)frame[2] << 8 | frame[3];
    if (length == 0 || length > sizeof m->bytes) return errno = EPROTO, -1;
    // One call takes the whole frame and what is attached to it, so that
    // of several processes waiting on the listener exactly one gets both.
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec piece = {frame, 4 + length};
    struct msghdr message = {.msg_iov = &piece, .msg_iovlen = 1,
                             .msg_control = control.space, .msg_controllen = sizeof control.space};
    n = REAL(recvmsg)(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS &&
            header->cmsg_len >= CMSG_LEN(sizeof(int))) {
            memcpy(passed, CMSG_DATA(header), sizeof(int));
        }
    }
    // Cut (very unlikely: the daemon writes a frame at once): the rest follows.
    int whole = (size_t)n >= 4 + length || read_all(fd, frame + n, 4 + length - n) == 0;
    memcpy(m->bytes, frame + 4, length);
    m->length = length;
    int error = !whole ? errno : m->bytes[0] == FAILURE ? failure_errno(m) : m->bytes[0] != expected ? EPROTO : 0;
    if (error) {
        if (*passed >= 0) REAL(close)(*passed);
        *passed = -1;
        return errno = error, -1;
    }
    return 1;
}

int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    struct sock *listener = lookup(fd);
    if (!listener) return REAL(accept4)(fd, address, length, flags);
    if (listener->type == SOCK_DGRAM) return errno = EOPNOTSUPP, -1;
    if (listener->state != LISTENING) return errno = EINVAL, -1;
    struct message answer;
    int taken, connection;
    // Several processes may wait on one listener (workers forked after
    // listen): each takes a whole answer in one read, and the one that gets
    // it serves the connection; the others go on waiting (or see EAGAIN).
    int nonblocking = fcntl(fd, F_GETFL) & O_NONBLOCK;
    for (;;) {
        taken = take_waiting_answer(fd, &answer, ACCEPTED_STREAM, &connection);
        if (taken != 0) break;
        if (nonblocking) return errno = EAGAIN, -1;
        // A signal ends the wait with EINTR, as the kernel's accept does.
        struct pollfd ready = {fd, POLLIN, 0};
        if (poll(&ready, 1, -1) < 0 && errno == EINTR) return -1;
    }
    if (taken < 0) {
        int saved = errno;
        // A connection that failed before it was taken: the listener goes
        // on (ask for the next one). netstackd gone: the stack's listener
        // is too, and the socket no longer listens (EINVAL, not a retry).
        if (saved != ECONNRESET) post_accept(fd);
        errno = saved == ECONNRESET ? EINVAL : saved;
        return -1;
    }
    int domain = listener->domain;
    // SO_LINGER is inherited from the listener, as in Linux.
    struct linger linger = listener->linger;
    post_accept(fd);
    // The answer's descriptor is the connection's byte stream already.
    struct sock *entry = connection >= 0 ? claim(connection, domain, SOCK_STREAM) : NULL;
    if (!entry) {
        if (connection >= 0) REAL(close)(connection);
        return errno = ECONNABORTED, -1;
    }
    entry->stream_key = get64(&answer, 1);
    entry->linger = linger;
    record_endpoints(&answer, 9, entry);
    set_state(entry, CONNECTED);
    apply_flags(connection, flags);
    if (address && length) {
        socklen_t size = entry->peer_length < *length ? entry->peer_length : *length;
        memcpy(address, &entry->peer, size);
        *length = entry->peer_length;
    }
    debug("netstack-preload: accept %d -> %d", fd, connection);
    return connection;
}

int accept(int fd, struct sockaddr *address, socklen_t *length) { return accept4(fd, address, length, 0); }

int connect(int fd, const struct sockaddr *address, socklen_t length) {
    struct sock *entry = lookup(fd);
    if (!entry) return REAL(connect)(fd, address, length);
    if (entry->type == SOCK_DGRAM) return datagram_connect(fd, entry, address, length);
    if (entry->state == CONNECTED) return errno = EISCONN, -1;
    if (entry->state == LISTENING) return errno = EINVAL, -1;
    int nonblocking = fcntl(fd, F_GETFL) & O_NONBLOCK;
    if (entry->state == CONNECTING) {
        // Asked again while under way: EALREADY until the answer is there.
        struct pollfd answered = {fd, POLLIN, 0};
        if (nonblocking && poll(&answered, 1, 0) == 0) return errno = EALREADY, -1;
        if (finish_connect(fd, entry) < 0) {
            entry->pending_error = 0;
            return -1;
        }
        return 0;
    }
    entry->pending_error = 0;
    if (!address || (address->sa_family != AF_INET && address->sa_family != AF_INET6)) return errno = EAFNOSUPPORT, -1;
    if (address->sa_family != entry->domain) return errno = EAFNOSUPPORT, -1;
    int mapped = address->sa_family == AF_INET6 &&
                 IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)address)->sin6_addr);
    if (mapped) {
        // An IPv4 peer through an IPv6 socket: the stack needs an IPv4 one,
        // under the same descriptor number.
        if (entry->state != OPEN) return errno = EAFNOSUPPORT, -1;
        struct message open = request(OPEN_SOCKET), opened;
        put8(&open, 4);
        put8(&open, 1);
        int replacement = control_connect_then(open);
        if (replacement < 0) return -1;
        int status = fcntl(fd, F_GETFL), descriptor_flags = fcntl(fd, F_GETFD);
        if (read_answer(replacement, &opened, DONE) < 0 || REAL(dup2)(replacement, fd) < 0) {
            int saved = errno;
            REAL(close)(replacement);
            return errno = saved, -1;
        }
        REAL(close)(replacement);
        fcntl(fd, F_SETFL, status);
        fcntl(fd, F_SETFD, descriptor_flags);
    }
    apply_options(fd, entry);
    struct message m = request(CONNECT), answer;
    if (put_endpoint(&m, address, length, 1) < 0) return -1;
    if (send_message(fd, &m) < 0) return -1;
    if (nonblocking) {
        // A peer on the link answers within a millisecond or so: a connect
        // that is answered in 10 ms returns its result at once. Otherwise
        // EINPROGRESS. The descriptor is writable from the start (it is the
        // control connection), so a program that polls for writability goes
        // on to getsockopt(SO_ERROR), which waits for the answer, as does a
        // first read or write (docs/preload.md).
        struct pollfd answered = {fd, POLLIN, 0};
        if (poll(&answered, 1, 10) == 0) {
            set_state(entry, CONNECTING);
            debug("netstack-preload: connect %d in progress", fd);
            return errno = EINPROGRESS, -1;
        }
    }
    if (read_answer(fd, &answer, DONE) < 0) return -1;
    if (become_stream(fd, entry) < 0) return -1;
    debug("netstack-preload: connect %d", fd);
    return 0;
}

static int copy_address(const struct sockaddr_storage *from, socklen_t from_length, struct sockaddr *to,
                        socklen_t *length) {
    if (!to || !length) return errno = EFAULT, -1;
    socklen_t size = from_length < *length ? from_length : *length;
    memcpy(to, from, size);
    *length = from_length;
    return 0;
}

int getsockname(int fd, struct sockaddr *address, socklen_t *length) {
    struct sock *entry = lookup(fd);
    if (!entry) return REAL(getsockname)(fd, address, length);
    if (entry->local_length == 0) {
        // Unbound: the wildcard address, port 0.
        struct sockaddr_storage any = {.ss_family = (sa_family_t)entry->domain};
        return copy_address(&any, entry->domain == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6),
                            address, length);
    }
    return copy_address(&entry->local, entry->local_length, address, length);
}

int getpeername(int fd, struct sockaddr *address, socklen_t *length) {
    struct sock *entry = lookup(fd);
    if (!entry) return REAL(getpeername)(fd, address, length);
    if ((entry->type == SOCK_STREAM && entry->state != CONNECTED) || entry->peer_length == 0) {
        return errno = ENOTCONN, -1;
    }
    return copy_address(&entry->peer, entry->peer_length, address, length);
}

static int give_int(void *value, socklen_t *length, int number) {
    if (!value || !length || *length < sizeof(int)) return errno = EINVAL, -1;
    memcpy(value, &number, sizeof number);
    *length = sizeof number;
    return 0;
}

int getsockopt(int fd, int level, int name, void *value, socklen_t *length) {
    struct sock *entry = lookup(fd);
    if (!entry) return REAL(getsockopt)(fd, level, name, value, length);
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_ERROR: {
            // A connect under way is finished first; its error is told once.
            if (entry->state == CONNECTING) finish_connect(fd, entry);
            int error = entry->pending_error;
            entry->pending_error = 0;
            return give_int(value, length, error);
        }
        case SO_TYPE: return give_int(value, length, entry->type);
        case SO_DOMAIN: return give_int(value, length, entry->domain);
        case SO_PROTOCOL: return give_int(value, length, entry->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP);
        case SO_ACCEPTCONN: return give_int(value, length, entry->state == LISTENING);
        case SO_KEEPALIVE: return give_int(value, length, entry->keepalive);
        case SO_REUSEADDR: return give_int(value, length, entry->reuseaddr);
        case SO_REUSEPORT: return give_int(value, length, entry->reuseport);
        case SO_RCVBUF: return give_int(value, length, entry->receive_buffer);
        case SO_SNDBUF: return give_int(value, length, entry->send_buffer);
        case SO_LINGER:
            if (!value || !length || *length < sizeof(struct linger)) return errno = EINVAL, -1;
            memcpy(value, &entry->linger, sizeof entry->linger);
            *length = sizeof entry->linger;
            return 0;
        case SO_RCVTIMEO:
        case SO_SNDTIMEO:
            // Timeouts are the descriptor's own: they apply to the stream.
            return REAL(getsockopt)(fd, level, name, value, length);
        }
    } else if (level == IPPROTO_TCP && entry->type == SOCK_STREAM) {
        switch (name) {
        case TCP_NODELAY: return give_int(value, length, entry->nodelay);
        case TCP_KEEPIDLE: return give_int(value, length, entry->keepidle);
        case TCP_KEEPINTVL: return give_int(value, length, entry->keepintvl);
        case TCP_KEEPCNT: return give_int(value, length, entry->keepcnt);
        case TCP_MAXSEG: return give_int(value, length, entry->domain == AF_INET ? 1448 : 1428);
        case TCP_CONGESTION: {
            static const char name[] = "cubic";
            if (!value || !length) return errno = EFAULT, -1;
            size_t size = *length < sizeof name ? *length : sizeof name;
            memcpy(value, name, size);
            *length = (socklen_t)size;
            return 0;
        }
        case TCP_INFO: {
            // What can be told without asking the stack (the control
            // connection carries the bytes by now): the state and the MSS;
            // counters read as zero.
            struct tcp_info info;
            memset(&info, 0, sizeof info);
            info.tcpi_state = entry->state == LISTENING ? 10 : entry->state == CONNECTED ? 1 : entry->state == CONNECTING ? 2 : 7;
            info.tcpi_snd_mss = info.tcpi_rcv_mss = entry->domain == AF_INET ? 1448 : 1428;
            info.tcpi_pmtu = 1500;
            info.tcpi_snd_cwnd = 10;
            if (!value || !length) return errno = EFAULT, -1;
            size_t size = *length < sizeof info ? *length : sizeof info;
            memcpy(value, &info, size);
            *length = (socklen_t)size;
            return 0;
        }
        }
    } else if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY && entry->domain == AF_INET6) {
        return give_int(value, length, entry->v6only);
    }
    return errno = ENOPROTOOPT, -1;
}

static int int_value(const void *value, socklen_t length) {
    int number = 0;
    if (value && length >= sizeof(int)) memcpy(&number, value, sizeof number);
    else if (value && length >= 1) number = *(const unsigned char *)value;
    return number;
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t length) {
    struct sock *entry = lookup(fd);
    if (!entry) return REAL(setsockopt)(fd, level, name, value, length);
    int number = int_value(value, length);
    // Until the socket listens or is connected its options go to the stack;
    // after that its control connection takes no more requests (a listener
    // keeps an accept waiting, a connection carries bytes), and they are
    // recorded only (docs/preload.md).
    int open = entry->type == SOCK_STREAM ? entry->state == OPEN || entry->state == BOUND : !entry->framed;
    // A connected TCP socket's keepalive options go through its stream's
    // key (a control connection per call; a stream whose connection is
    // gone already takes none, and the value is only recorded).
    int streaming = entry->type == SOCK_STREAM && entry->state == CONNECTED && entry->stream_key;
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_REUSEADDR:
            entry->reuseaddr = number != 0;
            // UDP sockets that all set it share a port in the stack too.
            if (entry->type == SOCK_DGRAM && open) return set_option(fd, OPTION_REUSE_ADDRESS, entry->reuseaddr);
            return 0;
        case SO_REUSEPORT: entry->reuseport = number != 0; return 0;
        case SO_KEEPALIVE:
            entry->keepalive = number != 0;
            if (streaming) stream_option(entry, OPTION_KEEPALIVE, entry->keepalive);
            return open ? set_option(fd, OPTION_KEEPALIVE, entry->keepalive) : 0;
        case SO_RCVBUF:
        case SO_SNDBUF: {
            int bytes = number < 4096 ? 4096 : number > (8 << 20) ? (8 << 20) : number;
            if (name == SO_RCVBUF) entry->receive_buffer = bytes; else entry->send_buffer = bytes;
            if (!open) return 0;
            return set_option(fd, name == SO_RCVBUF ? OPTION_RECEIVE_BUFFER : OPTION_SEND_BUFFER, (uint64_t)bytes);
        }
        case SO_LINGER:
            if (!value || length < sizeof(struct linger)) return errno = EINVAL, -1;
            memcpy(&entry->linger, value, sizeof entry->linger);
            return 0;
        case SO_RCVTIMEO:
        case SO_SNDTIMEO:
            return REAL(setsockopt)(fd, level, name, value, length);
        case SO_BROADCAST:
        case SO_PRIORITY:
        case SO_OOBINLINE:
            return 0;   // no effect on a TCP socket of the stack
        }
    } else if (level == IPPROTO_TCP) {
        switch (name) {
        case TCP_NODELAY:
            // On a connected socket only recorded: servers set it on every
            // accepted socket, and a round trip to the daemon each time cut
            // the accept rate to a quarter (docs/preload.md).
            entry->nodelay = number != 0;
            return open ? set_option(fd, OPTION_NO_DELAY, entry->nodelay) : 0;
        case TCP_CONGESTION:
            return 0;   // the stack's own (CUBIC) applies
        case TCP_KEEPIDLE:
        case TCP_KEEPINTVL:
        case TCP_KEEPCNT: {
            // Linux's bounds; the stack checks them again.
            if (number < 1 || number > (name == TCP_KEEPCNT ? 127 : 32767)) return errno = EINVAL, -1;
            int *field = name == TCP_KEEPIDLE ? &entry->keepidle : name == TCP_KEEPINTVL ? &entry->keepintvl
                : &entry->keepcnt;
            *field = number;
            uint8_t option = name == TCP_KEEPIDLE ? OPTION_KEEPALIVE_IDLE
                : name == TCP_KEEPINTVL ? OPTION_KEEPALIVE_INTERVAL : OPTION_KEEPALIVE_COUNT;
            if (streaming) stream_option(entry, option, (uint64_t)number);
            return open ? set_option(fd, option, (uint64_t)number) : 0;
        }
        case TCP_CORK:
        case TCP_QUICKACK:
        case TCP_DEFER_ACCEPT:
        case TCP_USER_TIMEOUT:
            return 0;   // accepted; the stack's own values apply
        }
    } else if (level == IPPROTO_IPV6 && entry->domain == AF_INET6) {
        switch (name) {
        case IPV6_V6ONLY:
            if (entry->state == LISTENING) return errno = EINVAL, -1;
            entry->v6only = number != 0;
            return 0;
        case IPV6_TCLASS:
            return 0;
        }
    } else if (level == IPPROTO_IP) {
        switch (name) {
        case IP_TOS:
            return 0;
        }
    }
    return errno = ENOPROTOOPT, -1;
}

int shutdown(int fd, int how) {
    struct sock *entry = lookup(fd);
    if (!entry) return REAL(shutdown)(fd, how);
    if (entry->type == SOCK_DGRAM) return errno = ENOTCONN, -1;
    if (entry->state != CONNECTED) return errno = ENOTCONN, -1;
    // The stream's own shutdown: its end of file is a FIN for the stack.
    return REAL(shutdown)(fd, how);
}

int close(int fd) {
    struct sock *entry = lookup(fd);
    if (entry && entry->type == SOCK_STREAM && entry->state == CONNECTED && entry->linger.l_onoff &&
        entry->linger.l_linger == 0) {
        // SO_LINGER on with a zero time: the daemon resets the connection
        // when the last descriptor of the stream closes, as Linux does when
        // the socket's last reference goes (a forked copy keeps it open).
        stream_option(entry, OPTION_RESET_ON_CLOSE, 1);
    } else if (entry && (entry->shared || entry->epoch != fork_epoch)) {
        // Another descriptor (a dup, the other side of a fork) may still
        // hold the connection: closing this one only drops a reference, as
        // in the kernel; the socket ends with the last.
    } else if (entry && entry->state != CONNECTED && !entry->framed) {
        // A listener or a bound socket holds a port: the daemon lets it go
        // when it sees this end finish, and closes its end after that, so
        // waiting for that end makes the port free on return, as a kernel
        // close does (a program that binds again at once gets it).
        REAL(shutdown)(fd, SHUT_WR);
        struct pollfd wait = {fd, POLLIN, 0};
        uint8_t drain[256];
        for (int rounds = 0; rounds < 64 && poll(&wait, 1, 2000) > 0; rounds++) {
            if (REAL(recv)(fd, drain, sizeof drain, MSG_DONTWAIT) <= 0) break;
        }
    } else if (entry && entry->type == SOCK_DGRAM) {
        // The engine frees the port before it closes its end.
        REAL(shutdown)(fd, SHUT_WR);
        struct pollfd wait = {fd, POLLIN, 0};
        uint8_t drain[4096];
        for (int rounds = 0; rounds < 1024 && poll(&wait, 1, 2000) > 0; rounds++) {
            if (REAL(recv)(fd, drain, sizeof drain, MSG_DONTWAIT) <= 0) break;
        }
    }
    release(fd);
    return REAL(close)(fd);
}

int dup(int fd) {
    int copy = REAL(dup)(fd);
    if (copy >= 0) copy_entry(fd, copy);
    return copy;
}

int dup2(int from, int to) {
    int result = REAL(dup2)(from, to);
    if (result >= 0 && from != to) copy_entry(from, to);
    return result;
}

int dup3(int from, int to, int flags) {
    int result = REAL(dup3)(from, to, flags);
    if (result >= 0) copy_entry(from, to);
    return result;
}

/// fcntl's F_DUPFD and F_DUPFD_CLOEXEC are dups too. Its third argument is
/// an int or a pointer by command; it is passed on as the machine word it
/// came in (both travel in the same register on x86-64 and AArch64).
static int fcntl_call(int (*real)(int, int, ...), int fd, int command, void *argument) {
    int result = real(fd, command, argument);
    if (result >= 0 && (command == F_DUPFD || command == F_DUPFD_CLOEXEC)) copy_entry(fd, result);
    return result;
}

int fcntl(int fd, int command, ...) {
    va_list arguments;
    va_start(arguments, command);
    void *argument = va_arg(arguments, void *);
    va_end(arguments);
    return fcntl_call(REAL(fcntl), fd, command, argument);
}

int fcntl64(int fd, int command, ...) {
    va_list arguments;
    va_start(arguments, command);
    void *argument = va_arg(arguments, void *);
    va_end(arguments);
    return fcntl_call(REAL(fcntl64), fd, command, argument);
}

// MARK: The data calls (UDP sockets of the stack, and TCP sockets whose connect is under way)

/// For the data calls: the UDP socket of `fd` if it is one of the stack's.
/// A TCP socket with a connect under way has it finished first (`*failed`
/// says whether that failed); after that its descriptor is a plain stream.
static struct sock *datagram_lookup(int fd, int *failed) {
    struct sock *entry = intercepted_lookup(fd);
    *failed = 0;
    if (!entry) return NULL;
    if (entry->type == SOCK_DGRAM) return entry;
    if (finish_connect(fd, entry) < 0) *failed = 1;
    return NULL;
}


ssize_t sendto(int fd, const void *buffer, size_t length, int flags, const struct sockaddr *address,
               socklen_t address_length) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(sendto)(fd, buffer, length, flags, address, address_length);
    struct iovec piece = {(void *)buffer, length};
    return datagram_send(fd, entry, &piece, 1, address, address_length);
}

ssize_t send(int fd, const void *buffer, size_t length, int flags) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(send)(fd, buffer, length, flags);
    struct iovec piece = {(void *)buffer, length};
    return datagram_send(fd, entry, &piece, 1, NULL, 0);
}

ssize_t write(int fd, const void *buffer, size_t length) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(write)(fd, buffer, length);
    struct iovec piece = {(void *)buffer, length};
    return datagram_send(fd, entry, &piece, 1, NULL, 0);
}

ssize_t sendmsg(int fd, const struct msghdr *message, int flags) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(sendmsg)(fd, message, flags);
    return datagram_send(fd, entry, message->msg_iov, message->msg_iovlen, message->msg_name, message->msg_namelen);
}

int sendmmsg(int fd, struct mmsghdr *messages, unsigned int count, int flags) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(sendmmsg)(fd, messages, count, flags);
    unsigned int sent = 0;
    for (; sent < count; sent++) {
        ssize_t n = sendmsg(fd, &messages[sent].msg_hdr, flags);
        if (n < 0) return sent > 0 ? (int)sent : -1;
        messages[sent].msg_len = (unsigned int)n;
    }
    return (int)sent;
}

ssize_t recvfrom(int fd, void *buffer, size_t length, int flags, struct sockaddr *address, socklen_t *address_length) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(recvfrom)(fd, buffer, length, flags, address, address_length);
    struct iovec piece = {buffer, length};
    int truncated = 0;
    ssize_t n = datagram_receive(fd, entry, &piece, 1, flags, address, address_length, &truncated);
    // Without MSG_TRUNC a receive returns what fitted (the rest is lost).
    return n < 0 ? -1 : (flags & MSG_TRUNC) ? n : (ssize_t)(n < (ssize_t)length ? n : (ssize_t)length);
}

ssize_t recv(int fd, void *buffer, size_t length, int flags) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(recv)(fd, buffer, length, flags);
    return recvfrom(fd, buffer, length, flags, NULL, NULL);
}

ssize_t read(int fd, void *buffer, size_t length) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(read)(fd, buffer, length);
    return recvfrom(fd, buffer, length, 0, NULL, NULL);
}

ssize_t recvmsg(int fd, struct msghdr *message, int flags) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(recvmsg)(fd, message, flags);
    int truncated = 0;
    socklen_t name_length = message->msg_namelen;
    ssize_t n = datagram_receive(fd, entry, message->msg_iov, message->msg_iovlen, flags, message->msg_name,
                                 message->msg_name ? &name_length : NULL, &truncated);
    if (n < 0) return -1;
    message->msg_namelen = message->msg_name ? name_length : 0;
    message->msg_controllen = 0;   // no ancillary data is served
    message->msg_flags = truncated ? MSG_TRUNC : 0;
    size_t room = 0;
    for (size_t i = 0; i < message->msg_iovlen; i++) room += message->msg_iov[i].iov_len;
    return (flags & MSG_TRUNC) ? n : (ssize_t)((size_t)n < room ? (size_t)n : room);
}

ssize_t writev(int fd, const struct iovec *pieces, int count) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(writev)(fd, pieces, count);
    return datagram_send(fd, entry, pieces, count < 0 ? 0 : (size_t)count, NULL, 0);
}

ssize_t readv(int fd, const struct iovec *pieces, int count) {
    int failed;
    struct sock *entry = datagram_lookup(fd, &failed);
    if (failed) return -1;
    if (!entry) return REAL(readv)(fd, pieces, count);
    int truncated = 0;
    size_t room = 0;
    for (int i = 0; i < count; i++) room += pieces[i].iov_len;
    ssize_t n = datagram_receive(fd, entry, pieces, count < 0 ? 0 : (size_t)count, 0, NULL, NULL, &truncated);
    return n < 0 ? -1 : (ssize_t)((size_t)n < room ? (size_t)n : room);
}
