#define _GNU_SOURCE
#include "ctap.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static int copy_name(struct ifreq *ifr, const char *name) {
    memset(ifr, 0, sizeof(*ifr));
    if (name == NULL || strlen(name) >= IFNAMSIZ) {
        return -ENAMETOOLONG;
    }
    strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
    return 0;
}

// Interface ioctls (SIOCGIFMTU and friends) need some socket to act on. Any
// family works; try the common ones so that a namespace without IPv4 still works.
static int control_socket(void) {
    static const int families[] = {AF_INET, AF_INET6, AF_UNIX};
    int last = EAFNOSUPPORT;
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        int fd = socket(families[i], SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            return fd;
        }
        last = errno;
    }
    return -last;
}

static int interface_ioctl(const char *name, unsigned long request, struct ifreq *ifr) {
    int fd = control_socket();
    if (fd < 0) {
        return fd;
    }
    int rc = ioctl(fd, request, ifr);
    int saved = errno;
    close(fd);
    return rc < 0 ? -saved : 0;
}

int ctap_open(const char *name, char *actual_name, size_t actual_cap, int flags) {
    struct ifreq ifr;
    int rc = copy_name(&ifr, name);
    if (rc < 0) {
        return rc;
    }
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (flags & CTAP_OPEN_VNET_HDR) {
        ifr.ifr_flags |= IFF_VNET_HDR;
    }
    if (flags & CTAP_OPEN_MULTI_QUEUE) {
        ifr.ifr_flags |= IFF_MULTI_QUEUE;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return -errno;
    }
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    if (actual_name != NULL && actual_cap > 0) {
        strncpy(actual_name, ifr.ifr_name, actual_cap - 1);
        actual_name[actual_cap - 1] = '\0';
    }
    return fd;
}

int ctap_set_up(const char *name) {
    struct ifreq ifr;
    int rc = copy_name(&ifr, name);
    if (rc < 0) {
        return rc;
    }
    rc = interface_ioctl(name, SIOCGIFFLAGS, &ifr);
    if (rc < 0) {
        return rc;
    }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return interface_ioctl(name, SIOCSIFFLAGS, &ifr);
}

int ctap_get_mtu(const char *name, int *mtu) {
    struct ifreq ifr;
    int rc = copy_name(&ifr, name);
    if (rc < 0) {
        return rc;
    }
    rc = interface_ioctl(name, SIOCGIFMTU, &ifr);
    if (rc == 0) {
        *mtu = ifr.ifr_mtu;
    }
    return rc;
}

int ctap_set_mtu(const char *name, int mtu) {
    struct ifreq ifr;
    int rc = copy_name(&ifr, name);
    if (rc < 0) {
        return rc;
    }
    ifr.ifr_mtu = mtu;
    return interface_ioctl(name, SIOCSIFMTU, &ifr);
}

int ctap_get_queue_length(const char *name, int *length) {
    struct ifreq ifr;
    int rc = copy_name(&ifr, name);
    if (rc < 0) {
        return rc;
    }
    rc = interface_ioctl(name, SIOCGIFTXQLEN, &ifr);
    if (rc == 0) {
        *length = ifr.ifr_qlen;
    }
    return rc;
}

int ctap_set_queue_length(const char *name, int length) {
    struct ifreq ifr;
    int rc = copy_name(&ifr, name);
    if (rc < 0) {
        return rc;
    }
    ifr.ifr_qlen = length;
    return interface_ioctl(name, SIOCSIFTXQLEN, &ifr);
}

int ctap_get_mac(const char *name, unsigned char mac[6]) {
    struct ifreq ifr;
    int rc = copy_name(&ifr, name);
    if (rc < 0) {
        return rc;
    }
    rc = interface_ioctl(name, SIOCGIFHWADDR, &ifr);
    if (rc == 0) {
        memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    }
    return rc;
}

int ctap_set_mac(const char *name, const unsigned char mac[6]) {
    struct ifreq ifr;
    int rc = copy_name(&ifr, name);
    if (rc < 0) {
        return rc;
    }
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
    return interface_ioctl(name, SIOCSIFHWADDR, &ifr);
}

int ctap_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0 ? -errno : 0;
}

int ctap_set_vnet_hdr_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 ? -errno : 0;
}

int ctap_interface_index(const char *name) {
    unsigned int index = if_nametoindex(name);
    return index == 0 ? -errno : (int)index;
}

int ctap_unshare_network_namespace(void) {
    return unshare(CLONE_NEWNET) < 0 ? -errno : 0;
}

int ctap_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int ctap_enter_network_namespace(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = setns(fd, CLONE_NEWNET);
    int saved = errno;
    close(fd);
    return rc < 0 ? -saved : 0;
}

int ctap_packet_socket(const char *name) {
    int index = ctap_interface_index(name);
    if (index < 0) {
        return index;
    }
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) {
        return -errno;
    }
    struct sockaddr_ll address;
    memset(&address, 0, sizeof(address));
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = index;
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    return fd;
}

int ctap_name_thread(const char *name) {
    char shortened[16];
    strncpy(shortened, name, sizeof shortened - 1);
    shortened[sizeof shortened - 1] = '\0';
    return -pthread_setname_np(pthread_self(), shortened);
}

int ctap_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int epoll_control(int epfd, int operation, int fd, unsigned int events, unsigned long long tag) {
    struct epoll_event event = {.events = events, .data.u64 = tag};
    return epoll_ctl(epfd, operation, fd, &event) < 0 ? -errno : 0;
}

long ctap_send_with_descriptor(int socket, const void *bytes, unsigned long length, int descriptor) {
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec piece = {(void *)bytes, length};
    struct msghdr message = {.msg_iov = &piece, .msg_iovlen = 1,
                             .msg_control = control.space, .msg_controllen = sizeof control.space};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &descriptor, sizeof(int));
    ssize_t sent = sendmsg(socket, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    return sent < 0 ? -errno : sent;
}

int ctap_epoll_add(int epfd, int fd, unsigned int events, unsigned long long tag) {
    return epoll_control(epfd, EPOLL_CTL_ADD, fd, events, tag);
}

int ctap_epoll_modify(int epfd, int fd, unsigned int events, unsigned long long tag) {
    return epoll_control(epfd, EPOLL_CTL_MOD, fd, events, tag);
}

int ctap_epoll_remove(int epfd, int fd) {
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
}

int ctap_epoll_wait(int epfd, unsigned long long *tags, unsigned int *events, int capacity, int timeout_ms) {
    struct epoll_event ready[256];
    if (capacity > 256) capacity = 256;
    int n = epoll_wait(epfd, ready, capacity, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        tags[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return n;
}
