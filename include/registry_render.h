/* registry_render.h - the registry read out as text: the repository index
 * (JSON, Triton's repository extension) and the per-model metrics that
 * outlive versions (Prometheus text). */
#ifndef INFERD_REGISTRY_RENDER_H
#define INFERD_REGISTRY_RENDER_H

#include "registry.h"
#include "strbuf.h"

/* Append the repository index: a JSON array of {"name", "version",
 * "state", "reason"} rows (reasons without file paths). Out of memory
 * leaves sb failed, as strbuf does; nothing else fails. */
void registry_render_index(struct registry *r, struct strbuf *sb);

/* Append the per-model metrics that outlive versions (load failures, load
 * durations, states) in Prometheus text format. Out of memory leaves sb
 * failed, as strbuf does; nothing else fails. */
void registry_render_metrics(struct registry *r, struct strbuf *sb);

#endif
