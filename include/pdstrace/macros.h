#ifndef PDS_CORE_MACROS_H
#define PDS_CORE_MACROS_H

#include <stddef.h>

/* Reach the struct that embeds a member (libuv src/uv-common.h, h2o
 * H2O_STRUCT_FROM_MEMBER): long-lived embedded handles are found this way, never by
 * casting a pointer to a first member. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define UNUSED(x) ((void)(x))

#endif
