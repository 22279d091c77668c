/* model_config_json.h - a model's effective configuration written back as
 * config.json text: every setting, the defaults it took filled in, so that
 * the answer parses back (model_config_parse) to the same configuration. */
#ifndef INFERD_MODEL_CONFIG_JSON_H
#define INFERD_MODEL_CONFIG_JSON_H

#include <stdbool.h>

#include "model_repo.h"
#include "strbuf.h"

/* Append cfg as one JSON object to sb. Returns 0, or -1 when out of memory
 * (sb->failed). */
int model_config_json(const struct model_config *cfg, struct strbuf *sb);

/* Append the n inputs or outputs of specs as a JSON array of {name,
 * datatype, shape} objects (v2 metadata's form), each with its "image"
 * preprocessing when with_image is set (config.json's form). */
void model_config_json_io(struct strbuf *sb, const struct io_spec *specs, int n, bool with_image);

#endif
