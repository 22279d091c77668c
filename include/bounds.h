/* bounds.h - inferd's fixed size limits that modules at every level share
 * (inputs and outputs per model, name lengths, models and versions served),
 * in a header of their own so that a low module needs no model-layer header
 * for a constant. */
#ifndef INFERD_BOUNDS_H
#define INFERD_BOUNDS_H

#define MODEL_MAX_IO 8
#define MODEL_NAME_MAX 128
#define MODEL_MAX_MODELS 64
#define MODEL_MAX_VERSIONS 16 /* versions served at once, and listed in a policy */

#endif
