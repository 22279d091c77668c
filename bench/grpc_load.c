/* grpc_load.c - a closed-loop gRPC load generator on gRPC's C core, the
 * counterpart of wrk for bench/grpc_vs_http.py: CONC calls of one method
 * always in flight, each carrying the same serialized request message (made
 * by the caller), for SECONDS. One thread drives every call through one
 * completion queue, as wrk -t1 drives its connections; the calls are spread
 * over CHANNELS HTTP/2 connections (default 1, as one gRPC client channel).
 *
 *   grpc_load HOST:PORT METHOD REQUEST_FILE SECONDS CONC [CHANNELS]
 *
 * METHOD is the full path, e.g. /inference.GRPCInferenceService/ModelInfer.
 * A call that ends with a status other than OK, or without a reply message,
 * counts as an error. Prints one line (latencies in microseconds):
 *   BENCH requests=N duration_us=D rps=R p50_us=A p90_us=B p99_us=C max_us=M
 *         errors=E first_error=CODE
 * Bench only: not part of inferd. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct slot {
    grpc_call *call;
    grpc_metadata_array initial, trailing;
    grpc_byte_buffer *reply;
    grpc_status_code status;
    grpc_slice details;
    uint64_t started_ns;
    int channel;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (bigger == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (buf == NULL || bad) {
        free(buf);
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Start one call in slot s; 0, or -1 when the core refused it. */
static int start_call(struct slot *s, grpc_channel *ch, grpc_completion_queue *cq,
                      grpc_slice method, grpc_slice request, int timeout_s)
{
    int channel = s->channel;
    memset(s, 0, sizeof *s);
    s->channel = channel;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(timeout_s, GPR_TIMESPAN));
    s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                       deadline, NULL);
    if (s->call == NULL)
        return -1;
    grpc_metadata_array_init(&s->initial);
    grpc_metadata_array_init(&s->trailing);
    grpc_slice copy = grpc_slice_ref(request);
    grpc_byte_buffer *payload = grpc_raw_byte_buffer_create(&copy, 1);
    grpc_slice_unref(copy);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = payload;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->reply;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    s->started_ns = now_ns();
    grpc_call_error e = grpc_call_start_batch(s->call, ops, 6, s, NULL);
    grpc_byte_buffer_destroy(payload); /* the core holds its own reference */
    if (e != GRPC_CALL_OK) {
        grpc_call_unref(s->call);
        grpc_metadata_array_destroy(&s->initial);
        grpc_metadata_array_destroy(&s->trailing);
        return -1;
    }
    return 0;
}

/* The call in s has ended: its result, and its resources freed. */
static int finish_call(struct slot *s)
{
    int ok = s->status == GRPC_STATUS_OK && s->reply != NULL;
    if (s->reply != NULL)
        grpc_byte_buffer_destroy(s->reply);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->initial);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_call_unref(s->call);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: %s HOST:PORT METHOD REQUEST_FILE SECONDS CONC [CHANNELS]\n",
                argv[0]);
        return 2;
    }
    double seconds = atof(argv[4]);
    int conc = atoi(argv[5]);
    int n_channels = argc == 7 ? atoi(argv[6]) : 1;
    if (seconds <= 0 || seconds > 3600 || conc < 1 || conc > 100000 || n_channels < 1 ||
        n_channels > conc) {
        fprintf(stderr, "grpc_load: SECONDS in (0, 3600], CONC >= 1, 1 <= CHANNELS <= CONC\n");
        return 2;
    }
    char *request;
    size_t request_len;
    if (read_file(argv[3], &request, &request_len) != 0) {
        fprintf(stderr, "grpc_load: cannot read %s\n", argv[3]);
        return 2;
    }
    grpc_init();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    /* A channel of its own per connection: without a local subchannel pool
     * channels with equal arguments would share one connection. */
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = 64 << 20},
    };
    grpc_channel_args channel_args = {2, args};
    grpc_channel **channels = calloc((size_t)n_channels, sizeof *channels);
    struct slot *slots = calloc((size_t)conc, sizeof *slots);
    size_t lat_cap = 1 << 20, n_lat = 0;
    uint64_t *lat = malloc(lat_cap * sizeof *lat);
    if (channels == NULL || slots == NULL || lat == NULL) {
        fprintf(stderr, "grpc_load: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n_channels; i++)
        channels[i] = grpc_channel_create(argv[1], creds, &channel_args);
    grpc_slice method = grpc_slice_from_copied_string(argv[2]);
    grpc_slice body = grpc_slice_from_copied_buffer(request, request_len);
    free(request);

    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    long errors = 0, in_flight = 0;
    int first_error = -1;
    for (int i = 0; i < conc; i++) {
        slots[i].channel = i % n_channels;
        if (start_call(&slots[i], channels[slots[i].channel], cq, method, body, 30) == 0)
            in_flight++;
        else
            errors++;
    }
    while (in_flight > 0) {
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(60, GPR_TIMESPAN)),
            NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            fprintf(stderr, "grpc_load: no completion in 60 s\n");
            return 1;
        }
        struct slot *s = ev.tag;
        uint64_t t = now_ns();
        in_flight--;
        grpc_status_code status = s->status;
        if (ev.success && finish_call(s)) {
            if (n_lat == lat_cap) {
                uint64_t *bigger = realloc(lat, lat_cap * 2 * sizeof *lat);
                if (bigger == NULL) {
                    fprintf(stderr, "grpc_load: out of memory\n");
                    return 1;
                }
                lat = bigger;
                lat_cap *= 2;
            }
            lat[n_lat++] = t - s->started_ns;
        } else {
            if (!ev.success)
                finish_call(s);
            errors++;
            if (first_error < 0)
                first_error = (int)status;
        }
        if (t < end) {
            if (start_call(s, channels[s->channel], cq, method, body, 30) == 0)
                in_flight++;
            else
                errors++;
        }
    }
    uint64_t duration = now_ns() - t0;
    qsort(lat, n_lat, sizeof *lat, cmp_u64);
#define PCT(p) (n_lat ? lat[(size_t)((double)(n_lat - 1) * (p))] / 1000 : 0)
    printf("BENCH requests=%zu duration_us=%llu rps=%.2f p50_us=%llu p90_us=%llu p99_us=%llu "
           "max_us=%llu errors=%ld first_error=%d\n",
           n_lat, (unsigned long long)(duration / 1000), (double)n_lat / ((double)duration / 1e9),
           (unsigned long long)PCT(0.50), (unsigned long long)PCT(0.90),
           (unsigned long long)PCT(0.99), (unsigned long long)PCT(1.0), errors, first_error);
    grpc_slice_unref(method);
    grpc_slice_unref(body);
    for (int i = 0; i < n_channels; i++)
        grpc_channel_destroy(channels[i]);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    free(channels);
    free(slots);
    free(lat);
    return errors > 0 ? 3 : 0;
}
