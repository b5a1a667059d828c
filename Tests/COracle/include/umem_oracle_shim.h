/* Swift cannot call the variadic ioctl; these wrap the oracle's calls. */
#ifndef UMEM_ORACLE_SHIM_H
#define UMEM_ORACLE_SHIM_H

#include "umem_oracle.h"

/* Opens /dev/umem_oracle; returns the descriptor or -errno. */
int umem_oracle_open(void);
/* Runs one query; returns 0 or the ioctl's errno. */
int umem_oracle_query(int fd, struct umem_oracle_query *query);
void umem_oracle_close(int fd);

#endif
