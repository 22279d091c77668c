/* transport.c - the server's listeners as one table (see transport.h). */
#include "transport.h"

int transport_start_all(const struct transport *t, int n, char *err, size_t err_len)
{
    for (int i = 0; i < n; i++) {
        if (t[i].ops->start(t[i].self, err, err_len) != 0) {
            transport_stop_all(t, i);
            return -1;
        }
    }
    return 0;
}

void transport_drain_begin_all(const struct transport *t, int n)
{
    for (int i = 0; i < n; i++)
        t[i].ops->drain_begin(t[i].self);
}

int transport_inflight_all(const struct transport *t, int n)
{
    int total = 0;
    for (int i = 0; i < n; i++)
        total += t[i].ops->inflight(t[i].self);
    return total;
}

bool transport_wait_idle_all(const struct transport *t, int n, uint64_t deadline_ns)
{
    bool idle = true;
    for (int i = 0; i < n; i++)
        idle &= t[i].ops->wait_idle(t[i].self, deadline_ns);
    return idle;
}

void transport_stop_all(const struct transport *t, int n)
{
    for (int i = n - 1; i >= 0; i--)
        t[i].ops->stop(t[i].self);
}
