print("rping: not implemented yet")
