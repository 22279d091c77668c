/* inferd_probe.c - `inferd-probe [PORT]`: exit 0 when the inferd on
 * 127.0.0.1:PORT (default $INFERD_PORT, else 8080) answers 200 on
 * /v2/health/ready. Same question as `inferd --health-check`, without loading
 * libtorch, so container health checks cost almost nothing. */
#include <stdio.h>
#include <stdlib.h>

#include "health_probe.h"

int main(int argc, char **argv)
{
    const char *port_text = argc > 1 ? argv[1] : getenv("INFERD_PORT");
    char *end = NULL;
    long port = port_text ? strtol(port_text, &end, 10) : 8080;
    if (port_text && (end == port_text || *end != '\0' || port < 1 || port > 65535)) {
        fprintf(stderr, "usage: inferd-probe [PORT]\n");
        return 2;
    }
    int status = health_probe((int)port, 2000);
    printf("ready: %d\n", status);
    return status == 200 ? 0 : 1;
}
