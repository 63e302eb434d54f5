// CTap: the few Linux calls a TAP device needs that Swift cannot make cleanly.
//
// `ioctl` is variadic in C, and the TUN constants are function-like macros
// (`_IOW(...)`), which Swift does not import. Everything here is a thin wrapper:
// each function returns 0 (or a file descriptor) on success and `-errno` on
// failure, so the Swift side can turn the number into a typed error.
#ifndef CTAP_H
#define CTAP_H

#include <stddef.h>
#include <sys/ioctl.h>      // must precede linux/if_tun.h, which uses _IOW
#include <linux/if_tun.h>

/// Flags accepted by `ctap_open`.
enum {
    /// Prefix every frame with a `struct virtio_net_hdr` (offloads, GSO).
    CTAP_OPEN_VNET_HDR = 1 << 0,
    /// Open one queue of a multi-queue TAP (`IFF_MULTI_QUEUE`).
    CTAP_OPEN_MULTI_QUEUE = 1 << 1,
};

/// Offload bits for `ctap_set_offload` (the kernel's `TUN_F_*`). UDP
/// segmentation (USO, Linux 6.2) is newer than some headers: its values are
/// fixed by the kernel ABI.
static const unsigned int CTAP_OFFLOAD_CSUM = TUN_F_CSUM;
static const unsigned int CTAP_OFFLOAD_TSO4 = TUN_F_TSO4;
static const unsigned int CTAP_OFFLOAD_TSO6 = TUN_F_TSO6;
static const unsigned int CTAP_OFFLOAD_TSO_ECN = TUN_F_TSO_ECN;
static const unsigned int CTAP_OFFLOAD_USO4 = 0x20;
static const unsigned int CTAP_OFFLOAD_USO6 = 0x40;

/// Opens `/dev/net/tun` and attaches it to the TAP interface `name`, creating the
/// interface when it does not exist (`TUNSETIFF` with `IFF_TAP | IFF_NO_PI`).
/// The kernel's final interface name is copied into `actual_name` (capacity
/// `actual_cap`, at least IFNAMSIZ). Returns the non-blocking, close-on-exec fd,
/// or `-errno`.
int ctap_open(const char *name, char *actual_name, size_t actual_cap, int flags);

/// Sets `IFF_UP` (and `IFF_RUNNING`) on the interface. Returns 0 or `-errno`.
int ctap_set_up(const char *name);

/// Reads the interface MTU into `*mtu`. Returns 0 or `-errno`.
int ctap_get_mtu(const char *name, int *mtu);

/// Sets the interface MTU. Returns 0 or `-errno`.
int ctap_set_mtu(const char *name, int mtu);
/// The kernel's queue of frames waiting for the reader (txqueuelen).
int ctap_get_queue_length(const char *name, int *length);
int ctap_set_queue_length(const char *name, int length);

/// Reads the kernel side's hardware address (6 bytes) into `mac`.
/// Returns 0 or `-errno`.
int ctap_get_mac(const char *name, unsigned char mac[6]);

/// Sets the kernel side's hardware address. Returns 0 or `-errno`.
int ctap_set_mac(const char *name, const unsigned char mac[6]);

/// `TUNSETOFFLOAD`: which offloads the reader of this fd accepts (`CTAP_OFFLOAD_*`).
/// Returns 0 or `-errno`.
int ctap_set_offload(int fd, unsigned int flags);

/// `TUNSETVNETHDRSZ`: size of the virtio header on this fd. Returns 0 or `-errno`.
int ctap_set_vnet_hdr_size(int fd, int size);

/// The interface's index, or `-errno`.
int ctap_interface_index(const char *name);

/// Moves the calling thread into a new, empty network namespace
/// (`unshare(CLONE_NEWNET)`). Tests use it to create TAP devices that nothing
/// outside the thread can see. Returns 0 or `-errno`.
int ctap_unshare_network_namespace(void);

/// Moves the calling thread into the network namespace at `path`
/// (`/var/run/netns/NAME`), with `setns`. Returns 0 or `-errno`.
int ctap_enter_network_namespace(const char *path);

/// An `AF_PACKET` raw socket bound to interface `name`: frames written to it
/// enter the interface as if the host had sent them. For tests and tools.
/// Returns the fd or `-errno`.
int ctap_packet_socket(const char *name);

/// A non-blocking, close-on-exec eventfd: the engine's wake-up descriptor
/// (`<sys/eventfd.h>` is not part of Swift's Glibc module). Returns the fd or `-errno`.
int ctap_eventfd(void);

/// epoll, without `struct epoll_event` (packed on x86-64, which Swift does
/// not import faithfully). Events are the kernel's `EPOLL*` bits below; a
/// tag comes back with each ready descriptor. Each returns `-errno` on failure.
enum {
    CTAP_EPOLL_IN = 0x001,
    CTAP_EPOLL_OUT = 0x004,
    CTAP_EPOLL_ERR = 0x008,
    CTAP_EPOLL_HUP = 0x010,
    CTAP_EPOLL_RDHUP = 0x2000,
};
/// Edge-triggered: report a change of readiness once.
static const unsigned int CTAP_EPOLL_EDGE = 1u << 31;
/// Sends `length` bytes on the Unix socket `socket` (non-blocking, no
/// SIGPIPE) with `descriptor` attached (SCM_RIGHTS). The bytes sent, or
/// -errno. The descriptor travels with the first byte, so a partial send
/// has passed it already.
long ctap_send_with_descriptor(int socket, const void *bytes, unsigned long length, int descriptor);
int ctap_epoll_create(void);
int ctap_epoll_add(int epfd, int fd, unsigned int events, unsigned long long tag);
int ctap_epoll_modify(int epfd, int fd, unsigned int events, unsigned long long tag);
int ctap_epoll_remove(int epfd, int fd);
/// Waits up to `timeout_ms` (0: not at all, -1: for ever); fills at most
/// `capacity` (≤ 256) tags and event sets. Returns how many are ready.
int ctap_epoll_wait(int epfd, unsigned long long *tags, unsigned int *events, int capacity, int timeout_ms);

/// Names the calling thread (at most 15 characters are kept): what `top -H`,
/// `ps -L` and profilers show. Returns 0 or `-errno`.
int ctap_name_thread(const char *name);

#endif
