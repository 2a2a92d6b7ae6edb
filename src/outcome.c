/* outcome.c - why a session ended. */
#include "outcome.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *by;
    enum session_result result;
} causes[] = {
    [END_CLIENT_CLOSE] = {"client", RESULT_NORMAL},
    [END_CLIENT_DROP] = {"client", RESULT_CLIENT_DROPPED},
    [END_BACKEND_EOF] = {"backend", RESULT_NORMAL},
    [END_BACKEND_ERROR] = {"backend", RESULT_BACKEND_ERROR},
    [END_PROTOCOL] = {"gateway", RESULT_PROTOCOL_ERROR},
    [END_TIMEOUT] = {"gateway", RESULT_TIMEOUT},
    [END_SHUTDOWN] = {"gateway", RESULT_SHUTDOWN},
    [END_HANDSHAKE] = {"gateway", RESULT_ERROR},
    [END_ERROR] = {"gateway", RESULT_ERROR},
};

void outcome_note(struct outcome *o, enum end_cause cause, const char *fmt, ...)
{
    if (o->set)
        return;
    o->set = true;
    o->cause = cause;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->reason, sizeof(o->reason), fmt, ap);
    va_end(ap);
}

const char *outcome_by(const struct outcome *o)
{
    return o->set ? causes[o->cause].by : "gateway";
}

enum session_result outcome_result(const struct outcome *o)
{
    return o->set ? causes[o->cause].result : RESULT_ERROR;
}
