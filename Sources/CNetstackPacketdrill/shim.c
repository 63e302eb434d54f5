// packetdrill's function table, filled with forwarders to the Swift backend
// (Sources/NetstackPacketdrill, `@_cdecl("nspd_...")`). C is needed for the
// two variadic entries (fcntl, ioctl), which Swift cannot define, and keeps
// the table's layout in one language with packetdrill's.
#include "netstack_packetdrill.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>

// The Swift side (one backend per process: packetdrill loads the library
// once per script).
void nspd_init(const char *flags);
void nspd_free(void);
int nspd_socket(int domain, int type, int protocol);
int nspd_bind(int fd, const struct sockaddr *address, socklen_t length);
int nspd_listen(int fd, int backlog);
int nspd_accept(int fd, struct sockaddr *address, socklen_t *length);
int nspd_connect(int fd, const struct sockaddr *address, socklen_t length);
ssize_t nspd_recvmsg(int fd, struct msghdr *message, int flags);
ssize_t nspd_sendmsg(int fd, const struct msghdr *message, int flags);
int nspd_fcntl(int fd, int command, long argument);
int nspd_ioctl(int fd, unsigned long request, void *argument);
int nspd_close(int fd);
int nspd_shutdown(int fd, int how);
int nspd_getsockopt(int fd, int level, int name, void *value, socklen_t *length);
int nspd_setsockopt(int fd, int level, int name, const void *value, socklen_t length);
int nspd_poll(struct pollfd *fds, nfds_t count, int timeout);
int nspd_netdev_send(const void *buffer, size_t count);
int nspd_netdev_receive(void *buffer, size_t *count, long long *time_usecs);
int nspd_usleep(unsigned long long microseconds);
int nspd_gettimeofday(struct timeval *time);

static void do_free(void *userdata) { (void)userdata; nspd_free(); }
static int do_socket(void *u, int domain, int type, int protocol) { (void)u; return nspd_socket(domain, type, protocol); }
static int do_bind(void *u, int fd, const struct sockaddr *a, socklen_t l) { (void)u; return nspd_bind(fd, a, l); }
static int do_listen(void *u, int fd, int backlog) { (void)u; return nspd_listen(fd, backlog); }
static int do_accept(void *u, int fd, struct sockaddr *a, socklen_t *l) { (void)u; return nspd_accept(fd, a, l); }
static int do_connect(void *u, int fd, const struct sockaddr *a, socklen_t l) { (void)u; return nspd_connect(fd, a, l); }

// Every read and write form is a message with one or more pieces.
static ssize_t receive_into(int fd, const struct iovec *vector, int count, int flags, struct sockaddr *address,
                            socklen_t *address_length) {
    struct msghdr message = { .msg_name = address, .msg_namelen = address_length ? *address_length : 0,
                              .msg_iov = (struct iovec *)vector, .msg_iovlen = (size_t)count };
    ssize_t result = nspd_recvmsg(fd, &message, flags);
    if (address_length) *address_length = message.msg_namelen;
    return result;
}

static ssize_t send_from(int fd, const struct iovec *vector, int count, int flags, const struct sockaddr *address,
                         socklen_t address_length) {
    struct msghdr message = { .msg_name = (void *)address, .msg_namelen = address_length,
                              .msg_iov = (struct iovec *)vector, .msg_iovlen = (size_t)count };
    return nspd_sendmsg(fd, &message, flags);
}

static ssize_t do_read(void *u, int fd, void *buffer, size_t count) {
    (void)u;
    struct iovec piece = { buffer, count };
    return receive_into(fd, &piece, 1, 0, NULL, NULL);
}
static ssize_t do_readv(void *u, int fd, const struct iovec *vector, int count) {
    (void)u;
    return receive_into(fd, vector, count, 0, NULL, NULL);
}
static ssize_t do_recv(void *u, int fd, void *buffer, size_t length, int flags) {
    (void)u;
    struct iovec piece = { buffer, length };
    return receive_into(fd, &piece, 1, flags, NULL, NULL);
}
static ssize_t do_recvfrom(void *u, int fd, void *buffer, size_t length, int flags, struct sockaddr *a,
                           socklen_t *l) {
    (void)u;
    struct iovec piece = { buffer, length };
    return receive_into(fd, &piece, 1, flags, a, l);
}
static ssize_t do_recvmsg(void *u, int fd, struct msghdr *message, int flags) { (void)u; return nspd_recvmsg(fd, message, flags); }
static ssize_t do_write(void *u, int fd, const void *buffer, size_t count) {
    (void)u;
    struct iovec piece = { (void *)buffer, count };
    return send_from(fd, &piece, 1, 0, NULL, 0);
}
static ssize_t do_writev(void *u, int fd, const struct iovec *vector, int count) {
    (void)u;
    return send_from(fd, vector, count, 0, NULL, 0);
}
static ssize_t do_send(void *u, int fd, const void *buffer, size_t length, int flags) {
    (void)u;
    struct iovec piece = { (void *)buffer, length };
    return send_from(fd, &piece, 1, flags, NULL, 0);
}
static ssize_t do_sendto(void *u, int fd, const void *buffer, size_t length, int flags, const struct sockaddr *a,
                         socklen_t l) {
    (void)u;
    struct iovec piece = { (void *)buffer, length };
    return send_from(fd, &piece, 1, flags, a, l);
}
static ssize_t do_sendmsg(void *u, int fd, const struct msghdr *message, int flags) { (void)u; return nspd_sendmsg(fd, message, flags); }

// Only the commands that take an argument read one.
static int do_fcntl(void *u, int fd, int command, ...) {
    (void)u;
    long argument = 0;
    if (command == F_SETFL || command == F_SETFD || command == F_DUPFD || command == F_DUPFD_CLOEXEC) {
        va_list list;
        va_start(list, command);
        argument = va_arg(list, long);
        va_end(list);
    }
    return nspd_fcntl(fd, command, argument);
}
static int do_ioctl(void *u, int fd, unsigned long request, ...) {
    (void)u;
    va_list list;
    va_start(list, request);
    void *argument = va_arg(list, void *);
    va_end(list);
    return nspd_ioctl(fd, request, argument);
}
static int do_close(void *u, int fd) { (void)u; return nspd_close(fd); }
static int do_shutdown(void *u, int fd, int how) { (void)u; return nspd_shutdown(fd, how); }
static int do_getsockopt(void *u, int fd, int level, int name, void *value, socklen_t *length) {
    (void)u;
    return nspd_getsockopt(fd, level, name, value, length);
}
static int do_setsockopt(void *u, int fd, int level, int name, const void *value, socklen_t length) {
    (void)u;
    return nspd_setsockopt(fd, level, name, value, length);
}
static int do_poll(void *u, struct pollfd *fds, nfds_t count, int timeout) { (void)u; return nspd_poll(fds, count, timeout); }
static int do_netdev_send(void *u, const void *buffer, size_t count) { (void)u; return nspd_netdev_send(buffer, count); }
static int do_netdev_receive(void *u, void *buffer, size_t *count, long long *time_usecs) {
    (void)u;
    return nspd_netdev_receive(buffer, count, time_usecs);
}
static int do_usleep(void *u, useconds_t microseconds) { (void)u; return nspd_usleep(microseconds); }
static int do_gettimeofday(void *u, struct timeval *time, struct timezone *zone) {
    (void)u;
    (void)zone;
    return nspd_gettimeofday(time);
}

// epoll, pipes and splice are not the stack's: scripts that use them fail
// with ENOSYS at that line.
static int unsupported(void) {
    errno = ENOSYS;
    return -1;
}
static int do_epoll_create(void *u, int size) { (void)u; (void)size; return unsupported(); }
static int do_epoll_ctl(void *u, int epfd, int op, int fd, struct epoll_event *event) {
    (void)u; (void)epfd; (void)op; (void)fd; (void)event;
    return unsupported();
}
static int do_epoll_wait(void *u, int epfd, struct epoll_event *events, int maximum, int timeout) {
    (void)u; (void)epfd; (void)events; (void)maximum; (void)timeout;
    return unsupported();
}
static int do_pipe(void *u, int fds[2]) { (void)u; (void)fds; return unsupported(); }
static int do_splice(void *u, int in, loff_t *in_offset, int out, loff_t *out_offset, size_t length,
                     unsigned int flags) {
    (void)u; (void)in; (void)in_offset; (void)out; (void)out_offset; (void)length; (void)flags;
    return unsupported();
}

__attribute__((visibility("default")))
void packetdrill_interface_init(const char *flags, struct netstack_packetdrill_interface *interface) {
    nspd_init(flags);
    *interface = (struct netstack_packetdrill_interface){
        .userdata = NULL, .free = do_free, .socket = do_socket, .bind = do_bind, .listen = do_listen,
        .accept = do_accept, .connect = do_connect, .read = do_read, .readv = do_readv, .recv = do_recv,
        .recvfrom = do_recvfrom, .recvmsg = do_recvmsg, .write = do_write, .writev = do_writev, .send = do_send,
        .sendto = do_sendto, .sendmsg = do_sendmsg, .fcntl = do_fcntl, .ioctl = do_ioctl, .close = do_close,
        .shutdown = do_shutdown, .getsockopt = do_getsockopt, .setsockopt = do_setsockopt, .poll = do_poll,
        .netdev_send = do_netdev_send, .netdev_receive = do_netdev_receive, .usleep = do_usleep,
        .gettimeofday = do_gettimeofday, .epoll_create = do_epoll_create, .epoll_ctl = do_epoll_ctl,
        .epoll_wait = do_epoll_wait, .pipe = do_pipe, .splice = do_splice,
    };
}
