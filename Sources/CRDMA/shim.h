// The few things Swift cannot import from libibverbs and librdmacm directly.
// Every symbol here is prefixed CRDMA_ so it never collides with rdma-core.
#ifndef CRDMA_SHIM_H
#define CRDMA_SHIM_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>
#include <errno.h>
#include <stddef.h>

// ibv_query_port is a macro; the prototype Swift sees is the compat one that
// fills a shorter struct. Calling through the macro fills the full struct.
static inline int CRDMA_query_port(struct ibv_context *context, uint8_t port,
                                   struct ibv_port_attr *attr) {
  return ibv_query_port(context, port, attr);
}

// errno is a macro; reading it through a function keeps the read next to the
// failing call with nothing in between.
static inline int CRDMA_errno(void) { return errno; }
static inline void CRDMA_set_errno(int value) { errno = value; }

// Named-enum aliases that the importer drops.
static const unsigned int CRDMA_ACCESS_OPTIONAL_RANGE = IBV_ACCESS_OPTIONAL_RANGE;

_Static_assert(sizeof(uint64_t) == 8, "64-bit IOVA");

#endif
