/* Anchor: libfabric's MR cache (ofi_mr_cache) in the verbs provider.
 *
 * Opens the verbs provider's domain on the device (FI_EP_MSG, the mr_mode
 * bits verbs asks for: FI_MR_LOCAL, FI_MR_VIRT_ADDR, FI_MR_ALLOCATED,
 * FI_MR_PROV_KEY), then runs the cache-bench harness (cache_anchor.h): each
 * lookup is fi_mr_reg on a buffer registered before, and its release is
 * fi_close on the returned MR. With a monitor running, the verbs provider
 * sends every fi_mr_reg of host memory through ofi_mr_cache_search, and
 * fi_close only drops the entry's use count; without one (monitor
 * "disabled", or one that failed to start) it registers every time, and the
 * "hits" field shows 0.
 *
 * Cache settings, unless already set in the environment (libfabric reads
 * them once, at the first fi_getinfo):
 *   FI_MR_CACHE_MONITOR=userfaultfd   (libfabric 1.17 knows "userfaultfd",
 *                                      "memhooks", "disabled"; not "uffd")
 *   FI_MR_CACHE_MAX_COUNT=2*N+1024    (default 1024 entries: more buffers
 *                                      than that would be evicted, not hit)
 *   FI_MR_CACHE_MAX_SIZE=2*N*stride   (default: memory / cores / 2)
 *
 * usage: fabric_mr_cache [--regions N] [--lookups M] [--threads T]
 *                        [--size BYTES] [--device NAME]
 * build: cc -O2 -pthread -o fabric_mr_cache fabric_mr_cache.c cache_anchor.c -lfabric
 */
#include <infiniband/verbs.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_anchor.h"

static void *fabric_reg(void *state, void *address, size_t length) {
  struct fid_domain *domain = state;
  struct fid_mr *mr = NULL;
  int ret = fi_mr_reg(domain, address, length, FI_SEND | FI_RECV | FI_READ | FI_WRITE |
                      FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 0, 0, &mr, NULL);
  if (ret) {
    fprintf(stderr, "fi_mr_reg(%p, %zu): %s\n", address, length, fi_strerror(-ret));
    return NULL;
  }
  return mr;
}

static int fabric_dereg(void *state, void *handle) {
  (void)state;
  int ret = fi_close(&((struct fid_mr *)handle)->fid);
  if (ret) fprintf(stderr, "fi_close(mr): %s\n", fi_strerror(-ret));
  return ret;
}

static void default_env(const char *name, unsigned long long value) {
  char text[32];
  snprintf(text, sizeof text, "%llu", value);
  setenv(name, text, 0);
}

int main(int argc, char **argv) {
  struct anchor_options options;
  anchor_parse(argc, argv, &options);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  unsigned long long stride = (options.size + page - 1) / page * page;
  setenv("FI_MR_CACHE_MONITOR", "userfaultfd", 0);
  default_env("FI_MR_CACHE_MAX_COUNT", 2ull * (unsigned long long)options.regions + 1024);
  default_env("FI_MR_CACHE_MAX_SIZE", 2ull * (unsigned long long)options.regions * stride);

  struct fi_info *hints = fi_allocinfo();
  if (!hints) return 1;
  hints->fabric_attr->prov_name = strdup("verbs");
  hints->ep_attr->type = FI_EP_MSG;
  hints->caps = FI_MSG | FI_RMA;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  if (options.device) hints->domain_attr->name = strdup(options.device);
  struct fi_info *info = NULL;
  int ret = fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, hints, &info);
  if (ret || !info) {
    fprintf(stderr, "fi_getinfo(verbs%s%s): %s\n", options.device ? ", " : "",
            options.device ? options.device : "", fi_strerror(-ret));
    return 1;
  }
  struct fid_fabric *fabric = NULL;
  struct fid_domain *domain = NULL;
  if ((ret = fi_fabric(info->fabric_attr, &fabric, NULL)) != 0) {
    fprintf(stderr, "fi_fabric: %s\n", fi_strerror(-ret));
    return 1;
  }
  if ((ret = fi_domain(fabric, info, &domain, NULL)) != 0) {
    fprintf(stderr, "fi_domain(%s): %s\n", info->domain_attr->name, fi_strerror(-ret));
    return 1;
  }
  if (!options.device) options.device = info->domain_attr->name;

  char extra[256];
  uint32_t version = fi_version();
  snprintf(extra, sizeof extra,
           "\"anchor\":\"libfabric %u.%u\",\"monitor\":\"%s\",\"maxCount\":\"%s\",",
           FI_MAJOR(version), FI_MINOR(version), getenv("FI_MR_CACHE_MONITOR"),
           getenv("FI_MR_CACHE_MAX_COUNT"));
  struct anchor_ops ops = {"libfabric-verbs", fabric_reg, fabric_dereg, domain,
                           /* what the verbs provider asks for these FI_ flags */
                           IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
                               IBV_ACCESS_REMOTE_WRITE};
  int status = anchor_run(&options, &ops, extra);
  fi_close(&domain->fid);
  fi_close(&fabric->fid);
  fi_freeinfo(info);
  fi_freeinfo(hints);
  return status;
}
