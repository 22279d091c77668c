/* redact.h - strip server file paths from messages that go to clients
 * (load errors, a failed model's reason); the log keeps the full text. */
#ifndef INFERD_REDACT_H
#define INFERD_REDACT_H

/* Rewrite, in place, every absolute path in s (a '/' at the start or after
 * a space, quote, '(', '[' or '=', up to the next space, quote, ':',
 * ',', ';', ')' or ']') to its last component: "cannot open
 * /srv/models/a/model.pt: No such file" becomes "cannot open model.pt: No
 * such file". Cannot fail. */
void redact_paths(char *s);

#endif
