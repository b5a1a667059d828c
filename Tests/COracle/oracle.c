#include "umem_oracle.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "umem_oracle_shim.h"

int umem_oracle_open(void) {
  int fd = open(UMEM_ORACLE_DEVICE, O_RDWR | O_CLOEXEC);
  return fd >= 0 ? fd : -errno;
}

int umem_oracle_query(int fd, struct umem_oracle_query *query) {
  return ioctl(fd, UMEM_ORACLE_QUERY, query) == 0 ? 0 : errno;
}

void umem_oracle_close(int fd) { close(fd); }
