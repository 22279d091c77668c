/* health_probe.c - minimal readiness client (see health_probe.h). */
#include "health_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int health_probe(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int status = -1;
    char request[128], reply[256];
    int n = snprintf(request, sizeof request,
                     "GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Connection: close\r\n\r\n",
                     port);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        write(fd, request, (size_t)n) == n) {
        ssize_t got = read(fd, reply, sizeof reply - 1);
        if (got > 12) {
            reply[got] = '\0';
            int code;
            if (sscanf(reply, "HTTP/1.%*d %d", &code) == 1)
                status = code;
        }
    }
    close(fd);
    return status;
}
