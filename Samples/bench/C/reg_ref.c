/* Plain C registration loop: the reference that `umem register --cycles`
 * is compared with. Same shape as the Swift loop: one page-aligned anonymous
 * buffer, then N times { time ibv_reg_mr; time ibv_dereg_mr }.
 *
 * usage: reg_ref SIZE_BYTES CYCLES [DEVICE]
 * prints one JSON object with mean nanoseconds per register and deregister.
 * build: cc -O2 -o reg_ref reg_ref.c -libverbs
 */
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SIZE_BYTES CYCLES [DEVICE]\n", argv[0]);
    return 2;
  }
  size_t size = strtoull(argv[1], NULL, 0);
  long cycles = strtol(argv[2], NULL, 0);
  const char *want = argc > 3 ? argv[3] : NULL;

  int count = 0;
  struct ibv_device **list = ibv_get_device_list(&count);
  if (!list || count == 0) { perror("ibv_get_device_list"); return 1; }
  struct ibv_device *dev = list[0];
  for (int i = 0; want && i < count; i++)
    if (strcmp(ibv_get_device_name(list[i]), want) == 0) dev = list[i];
  struct ibv_context *ctx = ibv_open_device(dev);
  if (!ctx) { perror("ibv_open_device"); return 1; }
  struct ibv_pd *pd = ibv_alloc_pd(ctx);
  if (!pd) { perror("ibv_alloc_pd"); return 1; }
  void *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) { perror("mmap"); return 1; }

  uint64_t reg_total = 0, dereg_total = 0;
  uint32_t lkey = 0;
  for (long i = 0; i < cycles; i++) {
    uint64_t t0 = now_ns();
    struct ibv_mr *mr = ibv_reg_mr(pd, buf, size, IBV_ACCESS_LOCAL_WRITE);
    uint64_t t1 = now_ns();
    if (!mr) { perror("ibv_reg_mr"); return 1; }
    lkey = mr->lkey;
    if (ibv_dereg_mr(mr)) { perror("ibv_dereg_mr"); return 1; }
    uint64_t t2 = now_ns();
    reg_total += t1 - t0;
    dereg_total += t2 - t1;
  }
  printf("{\"size\":%zu,\"cycles\":%ld,\"lkey\":\"0x%x\",\"registerNanoseconds\":%.1f,"
         "\"deregisterNanoseconds\":%.1f}\n",
         size, cycles, lkey, (double)reg_total / cycles, (double)dereg_total / cycles);
  munmap(buf, size);
  ibv_dealloc_pd(pd);
  ibv_close_device(ctx);
  ibv_free_device_list(list);
  return 0;
}
