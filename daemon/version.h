/* SPDX-License-Identifier: Apache-2.0 */
/* version.h -- the version string every binary reports. */
#ifndef KBRIDGE_VERSION_H
#define KBRIDGE_VERSION_H

#ifdef HAVE_CONFIG_H
#include "build-config.h"
#endif

#ifdef PACKAGE_VERSION
#define KBRIDGE_VERSION PACKAGE_VERSION
#else
#define KBRIDGE_VERSION "dev"
#endif

#endif
