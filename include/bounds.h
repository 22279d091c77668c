/* bounds.h - inferd's fixed size limits that modules at every level share
 * (inputs and outputs per model, name lengths, models and versions served)
 * and the model name rule, in a header of their own so that a low module
 * (the router) needs no model-layer header for them. */
#ifndef INFERD_BOUNDS_H
#define INFERD_BOUNDS_H

#include <stdbool.h>
#include <string.h>

#define MODEL_MAX_IO 8
#define MODEL_NAME_MAX 128
#define MODEL_MAX_MODELS 64
#define MODEL_MAX_VERSIONS 16 /* versions served at once, and listed in a policy */

/* A plain folder name: [A-Za-z0-9._-], not "." or "..", at most 127 bytes. */
static inline bool model_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= MODEL_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

#endif
