print("rdma-perf: not implemented yet")
