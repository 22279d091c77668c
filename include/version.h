/* version.h - inferd's version string. */
#ifndef INFERD_VERSION_H
#define INFERD_VERSION_H
#define INFERD_VERSION "0.1.0"
#endif
