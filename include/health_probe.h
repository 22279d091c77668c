/* health_probe.h - `inferd --health-check`: a tiny HTTP client that asks a
 * local server whether it is ready, so that container images need no curl. */
#ifndef INFERD_HEALTH_PROBE_H
#define INFERD_HEALTH_PROBE_H

/* GET http://127.0.0.1:port/v2/health/ready. Returns the HTTP status, or -1
 * when the server could not be reached (within timeout_ms). */
int health_probe(int port, int timeout_ms);

#endif
