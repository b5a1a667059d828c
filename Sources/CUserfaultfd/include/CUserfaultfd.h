// The userfaultfd kernel ABI the registration cache's monitor needs. Swift
// cannot import the ioctl numbers (function-like macros over struct sizes)
// or the packed union `struct uffd_msg`, so this shim calls the ioctls and
// flattens the messages. Every symbol is prefixed CUFFD_.
#ifndef CUFFD_SHIM_H
#define CUFFD_SHIM_H

#include <stdint.h>

/// Events the cache's monitor acts on (values of `struct uffd_msg.event`).
enum {
  CUFFD_EVENT_PAGEFAULT = 0x12,
  CUFFD_EVENT_FORK = 0x13,
  CUFFD_EVENT_REMAP = 0x14,
  CUFFD_EVENT_REMOVE = 0x15,
  CUFFD_EVENT_UNMAP = 0x16,
};

/// Features asked for at UFFDIO_API (UFFD_FEATURE_*).
enum {
  CUFFD_FEATURE_PAGEFAULT_FLAG_WP = 1 << 0,
  CUFFD_FEATURE_EVENT_REMAP = 1 << 2,
  CUFFD_FEATURE_EVENT_REMOVE = 1 << 3,
  CUFFD_FEATURE_EVENT_UNMAP = 1 << 6,
};

/// Register modes (UFFDIO_REGISTER_MODE_*).
enum {
  CUFFD_REGISTER_MODE_MISSING = 1 << 0,
  CUFFD_REGISTER_MODE_WP = 1 << 1,
};

/// One event, flattened from `struct uffd_msg`: for UNMAP and REMOVE,
/// `start`..`end`; for REMAP, `start` (from), `end` (from + len) and `to`.
typedef struct {
  uint32_t event;
  uint32_t reserved;
  uint64_t start;
  uint64_t end;
  uint64_t to;
} CUFFD_event;

/// `userfaultfd(2)` with O_CLOEXEC | O_NONBLOCK and, when `user_mode_only`
/// is non-zero, UFFD_USER_MODE_ONLY. Returns the descriptor, or -errno.
int CUFFD_open(int user_mode_only);

/// UFFDIO_API: asks for `features`; on success writes what the kernel
/// offers to `*available`. Returns 0 or -errno.
int CUFFD_api(int fd, uint64_t features, uint64_t *available);

/// UFFDIO_REGISTER of [start, start + length) in `mode`. Returns 0 or -errno.
int CUFFD_register(int fd, uint64_t start, uint64_t length, uint64_t mode);

/// UFFDIO_UNREGISTER of [start, start + length). Returns 0 or -errno.
int CUFFD_unregister(int fd, uint64_t start, uint64_t length);

/// UFFDIO_WRITEPROTECT with mode 0 (remove protection and wake the
/// faulting thread) on [start, start + length). Returns 0 or -errno.
int CUFFD_unprotect(int fd, uint64_t start, uint64_t length);

/// Reads pending messages (non-blocking) into a fixed stack array and
/// flattens up to `capacity` of them into `events`. Allocates nothing.
/// Returns the number written, 0 when none were pending, or -errno.
int CUFFD_read_events(int fd, CUFFD_event *events, int capacity);

/// An eventfd (O_CLOEXEC | O_NONBLOCK) to wake the monitor thread, or -errno.
int CUFFD_wake_fd(void);

/// poll(2) for readability of `fd` or `wake_fd`, up to `timeout_ms`.
/// Returns a bit set: 1 = uffd readable, 2 = wake_fd readable; or -errno.
int CUFFD_wait(int fd, int wake_fd, int timeout_ms);

#endif
