/* The kernel oracle's interface: one ioctl on /dev/umem_oracle that asks the
 * running kernel's own ib_umem code about a user buffer of the calling
 * process. Shared by the module (ci/oracle/umem_oracle.c) and the tests
 * (Tests/COracle), so both sides use one layout.
 */
#ifndef UMEM_ORACLE_H
#define UMEM_ORACLE_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define UMEM_ORACLE_DEVICE "/dev/umem_oracle"

struct umem_oracle_query {
	char device[64];        /* in: RDMA device name, e.g. "rxe0" */
	__u64 address;          /* in: first byte, a virtual address of the caller */
	__u64 length;           /* in: bytes */
	__u64 iova;             /* in: the IOVA given to ib_umem_find_best_pgsz */
	__u64 page_sizes;       /* in: the HCA's page-size bitmap (include 4 KiB) */
	__u64 blocks;           /* in: user pointer to a __u64 array, or 0 */
	__u64 block_capacity;   /* in: entries that array holds */
	__u32 access;           /* in: IB_ACCESS_* flags for ib_umem_get */
	__u32 failed_step;      /* out: 0, 1 device lookup, 2 ib_umem_get, 3 copy out */
	__s32 kernel_errno;     /* out: the failing step's errno, else 0 */
	__u32 reserved;
	__u64 page_size;        /* out: ib_umem_find_best_pgsz, 0 when none fits */
	__u64 block_count;      /* out: ib_umem_num_dma_blocks at that size */
	__u64 blocks_walked;    /* out: blocks rdma_umem_for_each_dma_block gave */
	__u64 dma_offset;       /* out: DMA address minus physical address (first page) */
	__u64 segments;         /* out: entries in the umem's DMA scatter list */
};

#define UMEM_ORACLE_QUERY _IOWR('u', 0x51, struct umem_oracle_query)

#endif
