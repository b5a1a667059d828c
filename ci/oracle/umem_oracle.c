// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * umem_oracle: lets a test process ask the running kernel's own ib_umem code
 * what it makes of one of the process's buffers. The ioctl runs in the
 * caller's context, so ib_umem_get pins the caller's pages (current->mm),
 * exactly as a registration would; the answer is what
 * ib_umem_find_best_pgsz picks for the given page-size bitmap and IOVA, the
 * block count, and every block rdma_umem_for_each_dma_block walks. The umem
 * is released before the ioctl returns. For tests only (ci/ loads it in the
 * lab VM).
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/scatterlist.h>
#include <linux/uaccess.h>
#include <rdma/ib_umem.h>
#include <rdma/ib_verbs.h>
#if __has_include(<rdma/iter.h>)
#include <rdma/iter.h>
#endif

#include "umem_oracle.h"

/*
 * ib_umem_get became ib_umem_get_va (a wrapper of ib_umem_get_attr_or_va)
 * in 7.x; Kbuild defines UMEM_ORACLE_GET_VA when the headers have it.
 */
#ifdef UMEM_ORACLE_GET_VA
#define oracle_umem_get ib_umem_get_va
#else
#define oracle_umem_get ib_umem_get
#endif

/*
 * The RDMA devices, as an ib_client sees them come and go: 7.x no longer
 * exports ib_device_get_by_name, while ib_register_client exists in every
 * kernel the lab runs. A reference taken with ib_device_try_get keeps a
 * device registered until ib_device_put.
 */
#define ORACLE_MAX_DEVICES 8
static struct ib_device *oracle_devices[ORACLE_MAX_DEVICES];
static DEFINE_MUTEX(oracle_devices_lock);

static int oracle_add_device(struct ib_device *device)
{
	int i;

	mutex_lock(&oracle_devices_lock);
	for (i = 0; i < ORACLE_MAX_DEVICES; i++) {
		if (!oracle_devices[i]) {
			oracle_devices[i] = device;
			break;
		}
	}
	mutex_unlock(&oracle_devices_lock);
	return 0;
}

static void oracle_remove_device(struct ib_device *device, void *client_data)
{
	int i;

	mutex_lock(&oracle_devices_lock);
	for (i = 0; i < ORACLE_MAX_DEVICES; i++)
		if (oracle_devices[i] == device)
			oracle_devices[i] = NULL;
	mutex_unlock(&oracle_devices_lock);
}

static struct ib_client oracle_client = {
	.name = "umem_oracle",
	.add = oracle_add_device,
	.remove = oracle_remove_device,
};

/* The device called `name` with a reference held, or NULL. */
static struct ib_device *oracle_device_get(const char *name)
{
	struct ib_device *found = NULL;
	int i;

	mutex_lock(&oracle_devices_lock);
	for (i = 0; i < ORACLE_MAX_DEVICES; i++) {
		struct ib_device *device = oracle_devices[i];

		if (device && !strcmp(dev_name(&device->dev), name) && ib_device_try_get(device)) {
			found = device;
			break;
		}
	}
	mutex_unlock(&oracle_devices_lock);
	return found;
}

static long oracle_query(struct umem_oracle_query *q)
{
	struct ib_device *device;
	struct ib_umem *umem;
	struct ib_block_iter biter;
	struct scatterlist *first;
	u64 __user *out = u64_to_user_ptr(q->blocks);
	u64 walked = 0;

	q->device[sizeof(q->device) - 1] = 0;
	device = oracle_device_get(q->device);
	if (!device) {
		q->failed_step = 1;
		q->kernel_errno = ENODEV;
		return 0;
	}
	umem = oracle_umem_get(device, q->address, q->length, q->access);
	if (IS_ERR(umem)) {
		q->failed_step = 2;
		q->kernel_errno = -PTR_ERR(umem);
		ib_device_put(device);
		return 0;
	}
	q->segments = umem->sgt_append.sgt.nents;
	first = umem->sgt_append.sgt.sgl;
	q->dma_offset = sg_dma_address(first) - (page_to_phys(sg_page(first)) + first->offset);
	/* Without a size at or below PAGE_SIZE the kernel WARNs and answers 0. */
	if (q->page_sizes & GENMASK(PAGE_SHIFT, 0))
		q->page_size = ib_umem_find_best_pgsz(umem, q->page_sizes, q->iova);
	if (q->page_size) {
		q->block_count = ib_umem_num_dma_blocks(umem, q->page_size);
		rdma_umem_for_each_dma_block(umem, &biter, q->page_size) {
			if (out && walked < q->block_capacity &&
			    put_user(rdma_block_iter_dma_address(&biter), out + walked)) {
				q->failed_step = 3;
				q->kernel_errno = EFAULT;
				break;
			}
			walked++;
		}
	}
	q->blocks_walked = walked;
	ib_umem_release(umem);
	ib_device_put(device);
	return 0;
}

static long oracle_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct umem_oracle_query q;
	long ret;

	if (cmd != UMEM_ORACLE_QUERY)
		return -ENOTTY;
	if (copy_from_user(&q, (void __user *)arg, sizeof(q)))
		return -EFAULT;
	q.failed_step = 0;
	q.kernel_errno = 0;
	q.page_size = q.block_count = q.blocks_walked = q.dma_offset = q.segments = 0;
	ret = oracle_query(&q);
	if (!ret && copy_to_user((void __user *)arg, &q, sizeof(q)))
		ret = -EFAULT;
	return ret;
}

static const struct file_operations oracle_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = oracle_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice oracle_device = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "umem_oracle",
	.fops = &oracle_fops,
	.mode = 0600,
};

static int __init oracle_init(void)
{
	int ret = ib_register_client(&oracle_client);

	if (ret)
		return ret;
	ret = misc_register(&oracle_device);
	if (ret)
		ib_unregister_client(&oracle_client);
	return ret;
}

static void __exit oracle_exit(void)
{
	misc_deregister(&oracle_device);
	ib_unregister_client(&oracle_client);
}

module_init(oracle_init);
module_exit(oracle_exit);

MODULE_DESCRIPTION("swift-umem test oracle: the kernel's ib_umem page-size and block answers");
MODULE_LICENSE("Dual MIT/GPL");
