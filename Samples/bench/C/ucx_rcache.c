/* Anchor: UCX's registration cache (ucs_rcache) behind the ib memory domain.
 *
 * Which call goes through ucs_rcache in UCX 1.13 (Debian 12's libucx0): the
 * ib memory domain's own registration, uct_md_mem_reg / uct_md_mem_dereg.
 * uct_ib_md_open walks UCX_IB_REG_METHODS (default "rcache,odp,direct") and,
 * when "rcache" comes first and the memory-event hooks (libucm) install,
 * gives the md the rcache's reg/dereg operations: uct_md_mem_reg becomes
 * ucs_rcache_get (a page-table lookup under a read lock, a reference taken)
 * and uct_md_mem_dereg becomes ucs_rcache_region_put. ucp_mem_map and UCP's
 * own per-message registration (ucp_request_memory_reg) call the same
 * uct_md_mem_reg for every md, so they reach the same rcache, with UCP's
 * bookkeeping on top; this anchor times the rcache path without it.
 *
 * A hit returns the region's memh that the first registration returned, so
 * the harness counts hits by comparing handles: where the rcache is not in
 * use (hooks refused, UCX_IB_REG_METHODS=direct) every lookup registers
 * afresh and "hits" is 0.
 *
 * usage: ucx_rcache [--regions N] [--lookups M] [--threads T]
 *                   [--size BYTES] [--device NAME]
 * build: cc -O2 -pthread -o ucx_rcache ucx_rcache.c cache_anchor.c -lucp -luct -lucs
 */
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>
#include <uct/api/uct.h>

#include "cache_anchor.h"

static void *ucx_reg(void *state, void *address, size_t length) {
  uct_mem_h memh = NULL;
  ucs_status_t status =
      uct_md_mem_reg((uct_md_h)state, address, length, UCT_MD_MEM_ACCESS_ALL, &memh);
  if (status != UCS_OK) {
    fprintf(stderr, "uct_md_mem_reg(%p, %zu): %s\n", address, length,
            ucs_status_string(status));
    return NULL;
  }
  return memh;
}

static int ucx_dereg(void *state, void *handle) {
  ucs_status_t status = uct_md_mem_dereg((uct_md_h)state, (uct_mem_h)handle);
  if (status != UCS_OK) {
    fprintf(stderr, "uct_md_mem_dereg: %s\n", ucs_status_string(status));
    return 1;
  }
  return 0;
}

/* Opens the "ib" component's memory domain named `device` (or its first). */
static uct_md_h open_ib_md(const char *device, char *name, size_t name_size) {
  uct_component_h *components = NULL;
  unsigned count = 0;
  ucs_status_t status = uct_query_components(&components, &count);
  if (status != UCS_OK) {
    fprintf(stderr, "uct_query_components: %s\n", ucs_status_string(status));
    return NULL;
  }
  uct_md_h md = NULL;
  for (unsigned c = 0; c < count && !md; c++) {
    uct_component_attr_t attr = {.field_mask = UCT_COMPONENT_ATTR_FIELD_NAME |
                                               UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT};
    if (uct_component_query(components[c], &attr) != UCS_OK || strcmp(attr.name, "ib") != 0)
      continue;
    uct_md_resource_desc_t *resources = calloc(attr.md_resource_count + 1, sizeof *resources);
    if (!resources) break;
    attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES;
    attr.md_resources = resources;
    if (uct_component_query(components[c], &attr) == UCS_OK) {
      for (unsigned r = 0; r < attr.md_resource_count && !md; r++) {
        if (device && strcmp(resources[r].md_name, device) != 0) continue;
        uct_md_config_t *config = NULL;
        if ((status = uct_md_config_read(components[c], NULL, NULL, &config)) != UCS_OK) {
          fprintf(stderr, "uct_md_config_read: %s\n", ucs_status_string(status));
          continue;
        }
        status = uct_md_open(components[c], resources[r].md_name, config, &md);
        uct_config_release(config);
        if (status != UCS_OK) {
          fprintf(stderr, "uct_md_open(%s): %s\n", resources[r].md_name,
                  ucs_status_string(status));
          md = NULL;
        } else {
          snprintf(name, name_size, "%s", resources[r].md_name);
        }
      }
    }
    free(resources);
  }
  uct_release_component_list(components);
  if (!md) fprintf(stderr, "no UCX ib memory domain%s%s\n", device ? " named " : "",
                   device ? device : "");
  return md;
}

int main(int argc, char **argv) {
  struct anchor_options options;
  anchor_parse(argc, argv, &options);
  char name[UCT_MD_NAME_MAX + 1] = "";
  uct_md_h md = open_ib_md(options.device, name, sizeof name);
  if (!md) return 1;
  options.device = name;
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  char extra[256];
  const char *methods = getenv("UCX_IB_REG_METHODS");
  snprintf(extra, sizeof extra, "\"anchor\":\"UCX %u.%u.%u\",\"regMethods\":\"%s\",", major,
           minor, release, methods ? methods : "rcache,odp,direct (default)");
  struct anchor_ops ops = {"ucx-rcache", ucx_reg, ucx_dereg, md,
                           /* UCT_MD_MEM_ACCESS_ALL, as the ib memory domain asks for it */
                           IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
                               IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC};
  int status = anchor_run(&options, &ops, extra);
  uct_md_close(md);
  return status;
}
