/* Included first by every source file: configuration and feature macros. */
#ifndef INCLUDES_H
#define INCLUDES_H

#include "config.h"

#ifndef _GNU_SOURCE
# define _GNU_SOURCE 1
#endif

#endif /* INCLUDES_H */
