// See include/CUserfaultfd.h. The struct layouts and ioctl numbers are the
// kernel's (linux/userfaultfd.h); the asserts below pin what we rely on.
#define _GNU_SOURCE
#include "CUserfaultfd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1  // linux 5.11
#endif

_Static_assert(sizeof(struct uffd_msg) == 32, "uffd_msg is 32 bytes");
_Static_assert(offsetof(struct uffd_msg, arg) == 8, "uffd_msg.arg at 8");
_Static_assert(sizeof(struct uffdio_api) == 24, "uffdio_api is 24 bytes");
_Static_assert(sizeof(struct uffdio_register) == 32, "uffdio_register is 32 bytes");
_Static_assert(CUFFD_EVENT_UNMAP == UFFD_EVENT_UNMAP, "event numbers");
_Static_assert(CUFFD_EVENT_REMOVE == UFFD_EVENT_REMOVE, "event numbers");
_Static_assert(CUFFD_EVENT_REMAP == UFFD_EVENT_REMAP, "event numbers");
_Static_assert(CUFFD_FEATURE_EVENT_UNMAP == UFFD_FEATURE_EVENT_UNMAP, "feature bits");
_Static_assert(CUFFD_FEATURE_EVENT_REMOVE == UFFD_FEATURE_EVENT_REMOVE, "feature bits");
_Static_assert(CUFFD_FEATURE_EVENT_REMAP == UFFD_FEATURE_EVENT_REMAP, "feature bits");
_Static_assert(CUFFD_FEATURE_PAGEFAULT_FLAG_WP == UFFD_FEATURE_PAGEFAULT_FLAG_WP, "feature bits");
_Static_assert(CUFFD_REGISTER_MODE_WP == UFFDIO_REGISTER_MODE_WP, "mode bits");
_Static_assert(CUFFD_REGISTER_MODE_MISSING == UFFDIO_REGISTER_MODE_MISSING, "mode bits");

int CUFFD_open(int user_mode_only) {
  int flags = O_CLOEXEC | O_NONBLOCK | (user_mode_only ? UFFD_USER_MODE_ONLY : 0);
  long fd = syscall(SYS_userfaultfd, flags);
  return fd < 0 ? -errno : (int)fd;
}

int CUFFD_api(int fd, uint64_t features, uint64_t *available) {
  struct uffdio_api api = {.api = UFFD_API, .features = features};
  if (ioctl(fd, UFFDIO_API, &api) != 0) return -errno;
  *available = api.features;
  return 0;
}

int CUFFD_register(int fd, uint64_t start, uint64_t length, uint64_t mode) {
  struct uffdio_register reg = {.range = {.start = start, .len = length}, .mode = mode};
  return ioctl(fd, UFFDIO_REGISTER, &reg) == 0 ? 0 : -errno;
}

int CUFFD_unregister(int fd, uint64_t start, uint64_t length) {
  struct uffdio_range range = {.start = start, .len = length};
  return ioctl(fd, UFFDIO_UNREGISTER, &range) == 0 ? 0 : -errno;
}

int CUFFD_unprotect(int fd, uint64_t start, uint64_t length) {
  struct uffdio_writeprotect wp = {.range = {.start = start, .len = length}, .mode = 0};
  return ioctl(fd, UFFDIO_WRITEPROTECT, &wp) == 0 ? 0 : -errno;
}

int CUFFD_read_events(int fd, CUFFD_event *events, int capacity) {
  struct uffd_msg messages[16];
  int limit = capacity < 16 ? capacity : 16;
  if (limit <= 0) return 0;
  ssize_t got;
  do {
    got = read(fd, messages, sizeof(struct uffd_msg) * (size_t)limit);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return errno == EAGAIN ? 0 : -errno;
  int count = (int)(got / (ssize_t)sizeof(struct uffd_msg));
  for (int i = 0; i < count; i++) {
    const struct uffd_msg *m = &messages[i];
    CUFFD_event *e = &events[i];
    e->event = m->event;
    e->reserved = 0;
    e->start = e->end = e->to = 0;
    switch (m->event) {
      case UFFD_EVENT_UNMAP:
      case UFFD_EVENT_REMOVE:
        e->start = m->arg.remove.start;
        e->end = m->arg.remove.end;
        break;
      case UFFD_EVENT_REMAP:
        e->start = m->arg.remap.from;
        e->end = m->arg.remap.from + m->arg.remap.len;
        e->to = m->arg.remap.to;
        break;
      case UFFD_EVENT_PAGEFAULT:
        e->start = m->arg.pagefault.address;
        e->end = m->arg.pagefault.address + 1;
        break;
      default:
        break;
    }
  }
  return count;
}

int CUFFD_wake_fd(void) {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd < 0 ? -errno : fd;
}

int CUFFD_wait(int fd, int wake_fd, int timeout_ms) {
  struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
  int n = poll(fds, wake_fd >= 0 ? 2 : 1, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : -errno;
  return ((fds[0].revents & (POLLIN | POLLERR | POLLHUP)) ? 1 : 0) |
         ((wake_fd >= 0 && (fds[1].revents & POLLIN)) ? 2 : 0);
}
