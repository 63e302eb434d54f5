// netstack-preload: loaded with LD_PRELOAD (by `netstack-run`), it gives an
// unmodified program sockets inside netstackd instead of the kernel's, for
// AF_INET and AF_INET6 stream sockets. See docs/preload.md.
//
// The library defines the socket calls themselves (socket, bind, listen,
// accept, accept4, connect, getsockname, getpeername, getsockopt,
// setsockopt, shutdown, close, dup2, dup3); everything else (read, write,
// send, recv, poll, epoll, sendfile, fork) works on the descriptors it hands
// out unchanged, because each is a real stream descriptor: the control
// connection to netstackd, which carries the connection's bytes once it is
// connected.
#ifndef NETSTACK_PRELOAD_H
#define NETSTACK_PRELOAD_H

/// The control socket the library talks to when NETSTACK_SOCKET is not set.
#define NETSTACK_DEFAULT_SOCKET "/run/netstackd.sock"

/// How many descriptors the library is serving now (for tests).
int netstack_preload_socket_count(void);

#endif
