// The table of functions packetdrill's --so_filename mode calls in a shared
// library (packetdrill.h in its sources): socket calls, the packet path and
// time. Declared here field by field in packetdrill's order, since the
// library is loaded by a packetdrill built separately; shim.c fills it.
#ifndef NETSTACK_PACKETDRILL_H
#define NETSTACK_PACKETDRILL_H

#include <poll.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

struct netstack_packetdrill_interface {
    void *userdata;
    void (*free)(void *userdata);
    int (*socket)(void *userdata, int domain, int type, int protocol);
    int (*bind)(void *userdata, int fd, const struct sockaddr *address, socklen_t length);
    int (*listen)(void *userdata, int fd, int backlog);
    int (*accept)(void *userdata, int fd, struct sockaddr *address, socklen_t *length);
    int (*connect)(void *userdata, int fd, const struct sockaddr *address, socklen_t length);
    ssize_t (*read)(void *userdata, int fd, void *buffer, size_t count);
    ssize_t (*readv)(void *userdata, int fd, const struct iovec *vector, int count);
    ssize_t (*recv)(void *userdata, int fd, void *buffer, size_t length, int flags);
    ssize_t (*recvfrom)(void *userdata, int fd, void *buffer, size_t length, int flags,
                        struct sockaddr *address, socklen_t *address_length);
    ssize_t (*recvmsg)(void *userdata, int fd, struct msghdr *message, int flags);
    ssize_t (*write)(void *userdata, int fd, const void *buffer, size_t count);
    ssize_t (*writev)(void *userdata, int fd, const struct iovec *vector, int count);
    ssize_t (*send)(void *userdata, int fd, const void *buffer, size_t length, int flags);
    ssize_t (*sendto)(void *userdata, int fd, const void *buffer, size_t length, int flags,
                      const struct sockaddr *address, socklen_t address_length);
    ssize_t (*sendmsg)(void *userdata, int fd, const struct msghdr *message, int flags);
    int (*fcntl)(void *userdata, int fd, int command, ...);
    int (*ioctl)(void *userdata, int fd, unsigned long request, ...);
    int (*close)(void *userdata, int fd);
    int (*shutdown)(void *userdata, int fd, int how);
    int (*getsockopt)(void *userdata, int fd, int level, int name, void *value, socklen_t *length);
    int (*setsockopt)(void *userdata, int fd, int level, int name, const void *value, socklen_t length);
    int (*poll)(void *userdata, struct pollfd *fds, nfds_t count, int timeout);
    // An IP packet from packetdrill to the stack: 0, or -1.
    int (*netdev_send)(void *userdata, const void *buffer, size_t count);
    // The next IP packet the stack sent, into `buffer` (`*count` is its size
    // in, the packet's length out), with the time it left.
    int (*netdev_receive)(void *userdata, void *buffer, size_t *count, long long *time_usecs);
    int (*usleep)(void *userdata, useconds_t microseconds);
    int (*gettimeofday)(void *userdata, struct timeval *time, struct timezone *zone);
    int (*epoll_create)(void *userdata, int size);
    int (*epoll_ctl)(void *userdata, int epfd, int op, int fd, struct epoll_event *event);
    int (*epoll_wait)(void *userdata, int epfd, struct epoll_event *events, int maximum, int timeout);
    int (*pipe)(void *userdata, int fds[2]);
    int (*splice)(void *userdata, int in, loff_t *in_offset, int out, loff_t *out_offset, size_t length,
                  unsigned int flags);
};

// What packetdrill looks up with dlsym and calls once, with --so_flags.
void packetdrill_interface_init(const char *flags, struct netstack_packetdrill_interface *interface);

#endif
