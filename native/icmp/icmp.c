/*
 * Faultline's ICMP echo socket: the one thing Node cannot do itself.
 *
 * Node has no raw or ICMP sockets, so without this every batch of echo probes starts an
 * fping process. This addon opens one socket per address family and lets the probe engine
 * (probes/icmp/socket.ts) send echo requests on it and hear the replies and ICMP errors,
 * with the kernel's receive timestamps, on the event loop (a uv_poll on the socket).
 *
 * The socket is, in this order of preference:
 *   - an unprivileged ICMP socket (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6: "ping sockets"), where
 *     net.ipv4.ping_group_range lets this process's group open one (systemd's default allows
 *     every group). The kernel gives it its own echo identifier and hands it only the
 *     replies to it; ICMP errors come through the socket's error queue (IP_RECVERR).
 *   - a raw socket (SOCK_RAW), with CAP_NET_RAW. It sees every ICMP message the host gets,
 *     so an ICMP filter lets through only replies and errors, and the replies and errors
 *     that do not carry our identifier are dropped here, before any JavaScript runs.
 *
 * What it does not do: choose addresses (the caller passes a resolved IP literal), retry,
 * or time out. Those are the engine's; this file only moves packets and reads headers.
 *
 * API (all synchronous; errors are thrown as Error with `code` an errno name):
 *   open(family 4|6, dontFragment bool, onEvents(events[])) -> { handle, raw, ident }
 *   send(handle, ip, seq, payloadBytes) -> the send time in ms (the receive timestamps' clock);
 *     EMSGSIZE (Don't Fragment, larger than the path's MTU) carries `mtu`, that MTU
 *   close(handle)
 * An event is { kind: 'reply'|'error'|'local', seq, from, atMs, type, code, info }:
 *   reply: an echo reply to our request `seq`, received at `atMs` (kernel timestamp).
 *   error: an ICMP error about our request `seq` (type, code; info: the next-hop MTU of a
 *          "fragmentation needed" / "packet too big", else 0), sent by `from`.
 *   local: our own stack refused request `seq` after sending began (code: errno; info: MTU).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef ICMP_FILTER
#define ICMP_FILTER 1
#endif
struct fl_icmp_filter {
  uint32_t data;
};

/* Datagrams read per wake-up before yielding to the loop: a flood cannot starve it. */
#define MAX_PER_WAKEUP 512
/* The largest echo payload: an IPv6 packet's 65,535 bytes less the ICMPv6 header (IPv4's
 * limit is 20 bytes less; the kernel refuses what exceeds it, EMSGSIZE). */
#define MAX_PAYLOAD 65527
/* The receive queue asked for. */
#define RECV_QUEUE_BYTES (4 << 20)
/* Largest datagram read: an echo reply carries the payload we sent (up to a whole IP packet). */
#define RECV_BYTES 65536

typedef struct {
  int fd;
  int family;
  int raw;
  uint16_t ident;
  int closed;
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
} icmp_sock;

/* The external a JavaScript handle holds: `s` is NULL once closed (libuv frees `s`). */
typedef struct {
  icmp_sock *s;
} icmp_box;

static unsigned char recv_buf[RECV_BYTES];
static unsigned char send_buf[RECV_BYTES];
static time_t base_sec;
static unsigned ident_counter;

#define CHECK(call)                                                                              \
  do {                                                                                           \
    if ((call) != napi_ok) return NULL;                                                          \
  } while (0)

static double ms_of(const struct timespec *ts) {
  return (double)(ts->tv_sec - base_sec) * 1e3 + (double)ts->tv_nsec / 1e6;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ms_of(&ts);
}

static napi_value throw_errno(napi_env env, int err, const char *what) {
  const char *name = uv_err_name(-err);
  char message[256];
  snprintf(message, sizeof message, "%s: %s (%s)", what, strerror(err), name);
  napi_throw_error(env, name, message);
  return NULL;
}

/*
 * The MTU of the path to `to` as our own stack knows it (the route's, or a smaller one learnt
 * from a "fragmentation needed" / "packet too big"): what a Don't Fragment packet larger than
 * it was refused for. Read from a connected UDP socket, which is the one place Linux gives it
 * out; 0 when that fails.
 */
static int path_mtu(int family, const struct sockaddr_in6 *to, socklen_t to_len) {
  struct sockaddr_in6 peer;
  memcpy(&peer, to, sizeof peer);
  /* Any port: connect() only picks the route. */
  if (family == 4)
    ((struct sockaddr_in *)&peer)->sin_port = htons(9);
  else
    peer.sin6_port = htons(9);
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int mtu = 0;
  socklen_t len = sizeof mtu;
  if (connect(fd, (struct sockaddr *)&peer, to_len) < 0 ||
      getsockopt(fd, family == 4 ? IPPROTO_IP : IPPROTO_IPV6, family == 4 ? IP_MTU : IPV6_MTU,
                 &mtu, &len) < 0)
    mtu = 0;
  close(fd);
  return mtu;
}

static uint16_t checksum(const unsigned char *p, size_t n) {
  uint32_t sum = 0;
  for (; n > 1; p += 2, n -= 2) sum += (uint32_t)(p[0] << 8 | p[1]);
  if (n == 1) sum += (uint32_t)(p[0] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons((uint16_t)~sum);
}

static void set_prop_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value value;
  if (napi_create_double(env, v, &value) == napi_ok) napi_set_named_property(env, obj, key, value);
}

static void set_prop_str(napi_env env, napi_value obj, const char *key, const char *v) {
  napi_value value;
  if (napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &value) == napi_ok)
    napi_set_named_property(env, obj, key, value);
}

static void push_event(napi_env env, napi_value events, uint32_t *n, const char *kind, int seq,
                       const char *from, double at, int type, int code, double info) {
  napi_value e;
  if (napi_create_object(env, &e) != napi_ok) return;
  set_prop_str(env, e, "kind", kind);
  set_prop_num(env, e, "seq", seq);
  set_prop_str(env, e, "from", from);
  set_prop_num(env, e, "atMs", at);
  set_prop_num(env, e, "type", type);
  set_prop_num(env, e, "code", code);
  set_prop_num(env, e, "info", info);
  napi_set_element(env, events, (*n)++, e);
}

static void addr_text(const struct sockaddr *sa, char *out, size_t len) {
  out[0] = '\0';
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

static double stamp_of(struct msghdr *msg) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      return ms_of(&ts);
    }
  }
  return now_ms();
}

static int is_error_type(int family, int type) {
  if (family == 4)
    return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH || type == ICMP_REDIRECT ||
           type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
  return type == ICMP6_DST_UNREACH || type == ICMP6_PACKET_TOO_BIG ||
         type == ICMP6_TIME_EXCEEDED || type == ICMP6_PARAM_PROB;
}

/*
 * One datagram from the normal queue: the ICMP message starts at `p` (after the IPv4
 * header of a raw IPv4 socket). A reply must carry our identifier (the kernel checked it
 * for a ping socket); an error must quote our echo request.
 */
static void parse_message(icmp_sock *s, const unsigned char *p, size_t n, const char *from,
                          double at, napi_value events, uint32_t *count) {
  if (n < 8) return;
  int type = p[0], code = p[1];
  int reply_type = s->family == 4 ? ICMP_ECHOREPLY : ICMP6_ECHO_REPLY;
  int request_type = s->family == 4 ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
  if (type == reply_type) {
    uint16_t id = (uint16_t)(p[4] << 8 | p[5]);
    if (s->raw && id != s->ident) return;
    push_event(s->env, events, count, "reply", p[6] << 8 | p[7], from, at, type, code, 0);
    return;
  }
  if (!s->raw || !is_error_type(s->family, type)) return;
  /* The error quotes the IP header of our request and at least its first 8 bytes. */
  const unsigned char *inner = p + 8;
  size_t left = n - 8;
  if (s->family == 4) {
    if (left < 20) return;
    size_t ihl = (size_t)(inner[0] & 0x0f) * 4;
    if (ihl < 20 || left < ihl + 8 || inner[9] != IPPROTO_ICMP) return;
    inner += ihl;
  } else {
    if (left < 48 || inner[6] != IPPROTO_ICMPV6) return;
    inner += 40;
  }
  if (inner[0] != request_type || (uint16_t)(inner[4] << 8 | inner[5]) != s->ident) return;
  double info = 0;
  if (s->family == 4 && type == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED)
    info = p[6] << 8 | p[7];
  else if (s->family == 6 && type == ICMP6_PACKET_TOO_BIG)
    info = (double)((uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7]);
  push_event(s->env, events, count, "error", inner[6] << 8 | inner[7], from, at, type, code, info);
}

/* The error queue of a ping socket: ICMP errors and local refusals about our requests. */
static void drain_errors(icmp_sock *s, napi_value events, uint32_t *count) {
  for (int i = 0; i < MAX_PER_WAKEUP; i++) {
    unsigned char data[64];
    union {
      char buf[512];
      struct cmsghdr align;
    } control;
    struct sockaddr_in6 name;
    struct iovec iov = {data, sizeof data};
    struct msghdr msg = {&name, sizeof name, &iov, 1, control.buf, sizeof control.buf, 0};
    ssize_t got = recvmsg(s->fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (got < 0) return;
    if (got < 8) continue;
    int seq = data[6] << 8 | data[7];
    double at = stamp_of(&msg);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (!((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
            (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)))
        continue;
      struct sock_extended_err *ee = (struct sock_extended_err *)CMSG_DATA(c);
      char from[INET6_ADDRSTRLEN];
      if (ee->ee_origin == SO_EE_ORIGIN_ICMP || ee->ee_origin == SO_EE_ORIGIN_ICMP6) {
        addr_text(SO_EE_OFFENDER(ee), from, sizeof from);
        push_event(s->env, events, count, "error", seq, from, at, ee->ee_type, ee->ee_code,
                   ee->ee_info);
      } else if (ee->ee_origin == SO_EE_ORIGIN_LOCAL) {
        push_event(s->env, events, count, "local", seq, "", at, 0, (int)ee->ee_errno,
                   ee->ee_info);
      }
    }
  }
}

static void drain_messages(icmp_sock *s, napi_value events, uint32_t *count) {
  for (int i = 0; i < MAX_PER_WAKEUP; i++) {
    union {
      char buf[256];
      struct cmsghdr align;
    } control;
    struct sockaddr_in6 name;
    struct iovec iov = {recv_buf, sizeof recv_buf};
    struct msghdr msg = {&name, sizeof name, &iov, 1, control.buf, sizeof control.buf, 0};
    ssize_t got = recvmsg(s->fd, &msg, MSG_DONTWAIT);
    if (got < 0) {
      /* A raw socket's pending error (from an ICMP error it also gets as a message): read. */
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      continue;
    }
    size_t n = (size_t)got < sizeof recv_buf ? (size_t)got : sizeof recv_buf;
    const unsigned char *p = recv_buf;
    if (s->raw && s->family == 4) {
      if (n < 20) continue;
      size_t ihl = (size_t)(p[0] & 0x0f) * 4;
      if (ihl < 20 || ihl > n) continue;
      p += ihl;
      n -= ihl;
    }
    char from[INET6_ADDRSTRLEN];
    addr_text((struct sockaddr *)&name, from, sizeof from);
    parse_message(s, p, n, from, stamp_of(&msg), events, count);
  }
}

static void on_poll(uv_poll_t *handle, int status, int events_mask) {
  icmp_sock *s = handle->data;
  if (s->closed) return;
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value events;
  uint32_t count = 0;
  if (napi_create_array(env, &events) == napi_ok) {
    if (!s->raw) drain_errors(s, events, &count);
    drain_messages(s, events, &count);
  }
  /* libuv stops a poll handle on POLLERR; the error is read now, so listen again. */
  if (status < 0) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
  }
  if (count > 0) {
    napi_value cb, recv, result;
    if (napi_get_reference_value(env, s->callback, &cb) == napi_ok &&
        napi_get_global(env, &recv) == napi_ok) {
      if (napi_make_callback(env, s->context, recv, cb, 1, &events, &result) ==
          napi_pending_exception) {
        napi_value exception;
        napi_get_and_clear_last_exception(env, &exception);
        napi_fatal_exception(env, exception);
      }
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_closed(uv_handle_t *handle) {
  icmp_sock *s = handle->data;
  close(s->fd);
  free(s);
}

static void shut(icmp_sock *s) {
  if (s->closed) return;
  s->closed = 1;
  uv_poll_stop(&s->poll);
  napi_delete_reference(s->env, s->callback);
  napi_async_destroy(s->env, s->context);
  uv_close((uv_handle_t *)&s->poll, on_closed);
}

static void finalize(napi_env env, void *data, void *hint) {
  icmp_box *box = data;
  if (box->s != NULL) shut(box->s);
  free(box);
}

static int open_socket(int family, int *raw) {
  int af = family == 4 ? AF_INET : AF_INET6;
  int proto = family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
  int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd >= 0) {
    *raw = 0;
    return fd;
  }
  int dgram_err = errno;
  fd = socket(af, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd >= 0) {
    *raw = 1;
    return fd;
  }
  /* Neither: name the refusal of the raw socket, or of the ping socket if that says more. */
  if (errno == EPERM || errno == EACCES) errno = dgram_err == EACCES ? EACCES : errno;
  return -1;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t family;
  bool dont_fragment;
  napi_valuetype cb_type;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &family) != napi_ok ||
      (family != 4 && family != 6) ||
      napi_get_value_bool(env, argv[1], &dont_fragment) != napi_ok ||
      napi_typeof(env, argv[2], &cb_type) != napi_ok || cb_type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "open(family: 4 | 6, dontFragment: boolean, onEvents: function)");
    return NULL;
  }
  int raw = 0;
  int fd = open_socket(family, &raw);
  if (fd < 0) return throw_errno(env, errno, "cannot open an ICMP socket");

  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  /* Room for the replies to a burst of requests sent in one turn of the loop (each one
   * costs ~1 kB of buffer): beyond net.core.rmem_max where we may (CAP_NET_ADMIN). */
  int rcvbuf = RECV_QUEUE_BYTES;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  uint16_t ident = 0;
  if (raw) {
    if (family == 4) {
      struct fl_icmp_filter filter = {
          ~((1u << ICMP_ECHOREPLY) | (1u << ICMP_DEST_UNREACH) | (1u << ICMP_SOURCE_QUENCH) |
            (1u << ICMP_REDIRECT) | (1u << ICMP_TIME_EXCEEDED) | (1u << ICMP_PARAMETERPROB))};
      setsockopt(fd, SOL_RAW, ICMP_FILTER, &filter, sizeof filter);
    } else {
      struct icmp6_filter filter;
      ICMP6_FILTER_SETBLOCKALL(&filter);
      ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
      ICMP6_FILTER_SETPASS(ICMP6_DST_UNREACH, &filter);
      ICMP6_FILTER_SETPASS(ICMP6_PACKET_TOO_BIG, &filter);
      ICMP6_FILTER_SETPASS(ICMP6_TIME_EXCEEDED, &filter);
      ICMP6_FILTER_SETPASS(ICMP6_PARAM_PROB, &filter);
      setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
    }
    /* Distinct per socket and per process, never 0. */
    ident = (uint16_t)((getpid() * 2654435761u + ++ident_counter * 40503u) & 0xffff);
    if (ident == 0) ident = 1;
  } else {
    /* A ping socket's identifier is its port: bind to let the kernel choose one now. */
    struct sockaddr_in6 any;
    socklen_t len;
    memset(&any, 0, sizeof any);
    if (family == 4) {
      ((struct sockaddr_in *)&any)->sin_family = AF_INET;
      len = sizeof(struct sockaddr_in);
    } else {
      any.sin6_family = AF_INET6;
      len = sizeof any;
    }
    if (bind(fd, (struct sockaddr *)&any, len) < 0 ||
        getsockname(fd, (struct sockaddr *)&any, &len) < 0) {
      int err = errno;
      close(fd);
      return throw_errno(env, err, "cannot bind an ICMP socket");
    }
    ident = ntohs(family == 4 ? ((struct sockaddr_in *)&any)->sin_port : any.sin6_port);
    if (family == 4)
      setsockopt(fd, SOL_IP, IP_RECVERR, &on, sizeof on);
    else
      setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &on, sizeof on);
  }
  if (dont_fragment) {
    if (family == 4) {
      int mode = IP_PMTUDISC_DO;
      setsockopt(fd, SOL_IP, IP_MTU_DISCOVER, &mode, sizeof mode);
    } else {
      int mode = IPV6_PMTUDISC_DO;
      setsockopt(fd, SOL_IPV6, IPV6_MTU_DISCOVER, &mode, sizeof mode);
      setsockopt(fd, SOL_IPV6, IPV6_DONTFRAG, &on, sizeof on);
    }
  }

  icmp_sock *s = calloc(1, sizeof *s);
  uv_loop_t *loop;
  napi_value resource_name;
  if (s == NULL || napi_get_uv_event_loop(env, &loop) != napi_ok ||
      uv_poll_init(loop, &s->poll, fd) != 0) {
    free(s);
    close(fd);
    napi_throw_error(env, "FL_ICMP_SOCKET", "cannot watch the ICMP socket");
    return NULL;
  }
  s->fd = fd;
  s->family = family;
  s->raw = raw;
  s->ident = ident;
  s->env = env;
  s->poll.data = s;
  napi_create_reference(env, argv[2], 1, &s->callback);
  napi_create_string_utf8(env, "FaultlineIcmpSocket", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &s->context);
  /* Like the engines' child processes, the socket alone does not keep Node running. */
  uv_unref((uv_handle_t *)&s->poll);
  uv_poll_start(&s->poll, UV_READABLE, on_poll);

  napi_value result, handle, value;
  icmp_box *box = malloc(sizeof *box);
  if (box == NULL) {
    shut(s);
    napi_throw_error(env, "ENOMEM", "cannot open an ICMP socket: out of memory");
    return NULL;
  }
  box->s = s;
  if (napi_create_external(env, box, finalize, NULL, &handle) != napi_ok) {
    shut(s);
    free(box);
    return NULL;
  }
  CHECK(napi_create_object(env, &result));
  CHECK(napi_set_named_property(env, result, "handle", handle));
  CHECK(napi_get_boolean(env, raw != 0, &value));
  CHECK(napi_set_named_property(env, result, "raw", value));
  CHECK(napi_create_uint32(env, ident, &value));
  CHECK(napi_set_named_property(env, result, "ident", value));
  return result;
}

static icmp_box *sock_arg(napi_env env, napi_value v) {
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_get_value_external(env, v, &data) != napi_ok)
    return NULL;
  return data;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  icmp_box *box = argc == 4 ? sock_arg(env, argv[0]) : NULL;
  char ip[INET6_ADDRSTRLEN + 1];
  size_t ip_len;
  uint32_t seq, payload;
  if (box == NULL ||
      napi_get_value_string_utf8(env, argv[1], ip, sizeof ip, &ip_len) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &seq) != napi_ok || seq > 0xffff ||
      napi_get_value_uint32(env, argv[3], &payload) != napi_ok || payload > MAX_PAYLOAD) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "send(handle, ip: string, seq: 0..65535, payloadBytes: 0..65527)");
    return NULL;
  }
  icmp_sock *s = box->s;
  if (s == NULL) {
    napi_throw_error(env, "ERR_SOCKET_CLOSED", "the ICMP socket is closed");
    return NULL;
  }
  struct sockaddr_in6 to;
  socklen_t to_len;
  memset(&to, 0, sizeof to);
  int ok;
  if (s->family == 4) {
    struct sockaddr_in *to4 = (struct sockaddr_in *)&to;
    to4->sin_family = AF_INET;
    ok = inet_pton(AF_INET, ip, &to4->sin_addr);
    to_len = sizeof *to4;
  } else {
    to.sin6_family = AF_INET6;
    ok = inet_pton(AF_INET6, ip, &to.sin6_addr);
    to_len = sizeof to;
  }
  if (ok != 1) {
    napi_throw_type_error(env, "ERR_INVALID_IP_ADDRESS", "send: not an IP literal of the socket's family");
    return NULL;
  }
  size_t n = 8 + payload;
  unsigned char *packet = send_buf;
  packet[0] = s->family == 4 ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
  packet[1] = 0;
  packet[2] = packet[3] = 0;
  packet[4] = (unsigned char)(s->ident >> 8);
  packet[5] = (unsigned char)(s->ident & 0xff);
  packet[6] = (unsigned char)(seq >> 8);
  packet[7] = (unsigned char)(seq & 0xff);
  for (size_t i = 8; i < n; i++) packet[i] = (unsigned char)(i & 0xff);
  /* IPv4 raw sockets send our checksum; the kernel fills in ICMPv6's and a ping socket's. */
  if (s->family == 4) {
    uint16_t sum = checksum(packet, n);
    memcpy(packet + 2, &sum, 2);
  }
  double at = now_ms();
  ssize_t sent = sendto(s->fd, packet, n, MSG_DONTWAIT, (struct sockaddr *)&to, to_len);
  if (sent < 0) {
    int err = errno;
    if (err != EMSGSIZE) return throw_errno(env, err, "sendto");
    /* Too big for the path with Don't Fragment: name the MTU it would have needed. */
    int mtu = path_mtu(s->family, &to, to_len);
    char message[256];
    snprintf(message, sizeof message, "sendto: %s (EMSGSIZE), mtu=%d", strerror(err), mtu);
    napi_value code, text, error, value;
    CHECK(napi_create_string_utf8(env, "EMSGSIZE", NAPI_AUTO_LENGTH, &code));
    CHECK(napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text));
    CHECK(napi_create_error(env, code, text, &error));
    if (mtu > 0 && napi_create_int32(env, mtu, &value) == napi_ok)
      napi_set_named_property(env, error, "mtu", value);
    napi_throw(env, error);
    return NULL;
  }
  napi_value result;
  CHECK(napi_create_double(env, at, &result));
  return result;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  icmp_box *box = argc == 1 ? sock_arg(env, argv[0]) : NULL;
  if (box == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "close(handle)");
    return NULL;
  }
  if (box->s != NULL) shut(box->s);
  box->s = NULL;
  return NULL;
}

static napi_value js_now(napi_env env, napi_callback_info info) {
  napi_value result;
  CHECK(napi_create_double(env, now_ms(), &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  base_sec = ts.tv_sec;
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"nowMs", NULL, js_now, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
