// See include/CThreadSlots.h.
#define _GNU_SOURCE
#include "CThreadSlots.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

__thread int32_t CTS_slot_plus_one __attribute__((tls_model("initial-exec")));

_Static_assert(CTS_SLOTS == 64, "one bit per slot in a 64-bit word");

/// Bit k set: slot k is owned by a live thread.
static _Atomic uint64_t owned_bits;
/// One more than the highest slot ever claimed.
static _Atomic int32_t slots_used;
static pthread_key_t exit_key;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
/// 1 when threads may own slots (membarrier registered, exit key made).
static int slots_usable;

static long membarrier(int command) { return syscall(SYS_membarrier, command, 0, 0); }

/// A thread that owned a slot exits: the slot is free again. Its last
/// stores to the slot's words happen before the release of the bit, and
/// the next owner's claim acquires it.
static void release_slot(void *value) {
  int32_t slot = (int32_t)(intptr_t)value - 1;
  atomic_fetch_and(&owned_bits, ~((uint64_t)1 << slot));
}

/// A page whose protection changes force the TLB shootdown fallback.
static void *flush_page;

static void setup(void) {
  // The escape hatch (and the way to test the other path): every thread
  // then reads on the hashed stripes, and membarrier is never called.
  const char *wanted = getenv("UMEM_CACHE_THREAD_SLOTS");
  if (wanted && strcmp(wanted, "0") == 0) return;
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) return;
  // The fallback must exist before any thread relies on the heavy fence.
  void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return;
  if (pthread_key_create(&exit_key, release_slot) != 0) {
    munmap(page, 4096);
    return;
  }
  flush_page = page;
  slots_usable = 1;
}

int CTS_prepare(void) {
  pthread_once(&setup_once, setup);
  return slots_usable;
}

int32_t CTS_claim(void) {
  if (!CTS_prepare()) return CTS_slot_plus_one = -1;
  uint64_t bits = atomic_load(&owned_bits);
  for (;;) {
    if (bits == UINT64_MAX) return CTS_slot_plus_one = -1;
    int slot = __builtin_ctzll(~bits);
    uint64_t claimed = bits | ((uint64_t)1 << slot);
    if (!atomic_compare_exchange_weak(&owned_bits, &bits, claimed)) continue;
    if (pthread_setspecific(exit_key, (void *)(intptr_t)(slot + 1)) != 0) {
      atomic_fetch_and(&owned_bits, ~((uint64_t)1 << slot));
      return CTS_slot_plus_one = -1;
    }
    int32_t used = atomic_load(&slots_used);
    while (used < slot + 1 && !atomic_compare_exchange_weak(&slots_used, &used, slot + 1)) {
    }
    return CTS_slot_plus_one = slot + 1;
  }
}

int32_t CTS_owned(void) { return (int32_t)__builtin_popcountll(atomic_load(&owned_bits)); }

int32_t CTS_slots_used(void) { return atomic_load(&slots_used); }

void CTS_heavy_fence(void) {
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  // Refused (registration lost, say across fork): register again, else
  // make every processor that runs one of our threads take an interrupt.
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
    return;
  // Only a thread that owns a slot relies on this, so setup() made the page.
  atomic_thread_fence(memory_order_seq_cst);
  // Touched while writable, so the downgrade must shoot down the entry.
  *(volatile char *)flush_page = 1;
  mprotect(flush_page, 4096, PROT_READ);
  mprotect(flush_page, 4096, PROT_READ | PROT_WRITE);
  atomic_thread_fence(memory_order_seq_cst);
}
