internal import CRDMA
