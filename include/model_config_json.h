/* model_config_json.h - a model's effective configuration written back as
 * config.json text: every setting, the defaults it took filled in, so that
 * the answer parses back (model_config_parse) to the same configuration. */
#ifndef INFERD_MODEL_CONFIG_JSON_H
#define INFERD_MODEL_CONFIG_JSON_H

#include "model_repo.h"
#include "strbuf.h"

/* Append cfg as one JSON object to sb. Returns 0, or -1 when out of memory
 * (sb->failed). */
int model_config_json(const struct model_config *cfg, struct strbuf *sb);

#endif
