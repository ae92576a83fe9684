/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_sasl.h -- kbridge's server side of AMQP SASL, installed on each
 * transport through proton's sasl_plugin.h: PLAIN checked against
 * auth.users by a callback (core_authenticate in practice), ANONYMOUS
 * only when allowed, and EXTERNAL only on a TLS connection whose client
 * certificate was verified (mTLS). It does not depend on proton being built
 * with Cyrus SASL, so the mechanisms offered are exactly these.
 *
 * The check is called on the loop thread while proton processes the SASL
 * init frame; it answers at once or returns AMQP_SASL_PENDING and answers
 * later with amqp_sasl_complete (the password is hashed off the loop).
 * Until then no outcome is sent and proton reads no AMQP frame. On success
 * the authenticated name is what pn_sasl_get_user(pn_sasl(transport))
 * returns afterwards. */
#ifndef KBRIDGE_AMQP_SASL_H
#define KBRIDGE_AMQP_SASL_H

#include <proton/transport.h>
#include <stdbool.h>
#include <stddef.h>

/* Check credentials. `login` is NULL for ANONYMOUS. On success return 0 and
 * write the user name to record into user (e.g. "anonymous"); on refusal
 * return -1 with a one-line reason in reason (logged, never sent); or
 * return AMQP_SASL_PENDING and call amqp_sasl_complete later (`password`
 * is wiped after the call: copy it). */
#define AMQP_SASL_PENDING 1
typedef int (*amqp_sasl_check_fn)(void *opaque, const char *mechanism, const char *login,
                                  const char *password, char *user, size_t user_size, char *reason,
                                  size_t reason_size);

/* Make `transport` (a server transport, before any bytes are processed)
 * offer PLAIN, plus ANONYMOUS when allow_anonymous, plus EXTERNAL (first)
 * when `external` is the identity of a verified TLS client certificate
 * (NULL: none; copied), and check them with `check(opaque, ...)`: EXTERNAL
 * calls it with mechanism "EXTERNAL", login = that identity, password NULL.
 * An EXTERNAL authzid other than empty or the identity is refused. A client
 * that skips the SASL layer is refused unless allow_anonymous. opaque must
 * outlive the transport. 0, or -1 with err. */
int amqp_sasl_install(pn_transport_t *transport, bool allow_anonymous, const char *external,
                      amqp_sasl_check_fn check, void *opaque, char *err, size_t err_size);

/* The answer to a check that returned AMQP_SASL_PENDING: `user` on success,
 * NULL and a reason on refusal. Then run the connection's driver so the
 * outcome is written. */
void amqp_sasl_complete(pn_transport_t *transport, const char *user, const char *reason);

/* The reason the last check on this transport refused, or "" (for logs). */
const char *amqp_sasl_failure(pn_transport_t *transport);

#endif
