// Linux headers that Swift's Glibc module does not include: epoll and
// eventfd, for UmemSystem's reactor. Nothing is defined here.
#ifndef CUMEMSYSTEM_SHIM_H
#define CUMEMSYSTEM_SHIM_H

#include <sys/epoll.h>
#include <sys/eventfd.h>

#endif
