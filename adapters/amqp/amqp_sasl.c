/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_sasl.c -- kbridge's server side of AMQP SASL through proton's plugin
 * interface (sasl_plugin.h): offers PLAIN, plus ANONYMOUS when allowed,
 * checks them with the caller's function (core_authenticate), and never
 * acts as a SASL client. It replaces whatever implementation proton picked
 * (Cyrus when built with it, else its default one, which cannot check
 * passwords), so the mechanisms and the check are the same everywhere.
 *
 * PLAIN's initial response is "authzid NUL authcid NUL password" (RFC
 * 4616); it is parsed strictly, an authzid other than empty or the user
 * itself is refused (no impersonation), and the password is wiped after the
 * check (a check may answer later: amqp_sasl_complete). proton keeps the user name pointer given to
 * pnx_sasl_set_succeeded, so it lives in the per-transport state, freed with the transport. */
#include "amqp_sasl.h"

#include <proton/sasl.h>
#include <proton/sasl_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AMQP_SASL_FIELD_MAX 255 /* authzid, authcid, password: bytes each */

struct amqp_sasl_state {
    amqp_sasl_check_fn check;
    void *opaque;
    bool allow_anonymous;
    bool has_external;                       /* a verified client certificate */
    char external[AMQP_SASL_FIELD_MAX + 1];  /* its identity */
    char mechanisms[64];                     /* offered, space-separated */
    char user[AMQP_SASL_FIELD_MAX + 1];      /* authenticated name; proton points at it */
    char failure[AMQP_SASL_FIELD_MAX + 128]; /* why the last attempt was refused */
};

static struct amqp_sasl_state *amqp_sasl_state_of(pn_transport_t *transport)
{
    return pnx_sasl_get_context(transport);
}

static void amqp_sasl_refuse(pn_transport_t *transport, const char *format, const char *detail)
{
    struct amqp_sasl_state *state = amqp_sasl_state_of(transport);
    snprintf(state->failure, sizeof(state->failure), format, detail);
    pnx_sasl_set_failed(transport);
    pnx_sasl_set_desired_state(transport, SASL_POSTED_OUTCOME);
}

/* Copy one NUL-terminated field of a PLAIN response. The length of the
 * field (up to the next NUL or the end) or -1 when it does not fit. */
static int amqp_sasl_plain_field(const char *start, const char *end, char *out, bool last)
{
    const char *nul = memchr(start, '\0', (size_t)(end - start));
    if (last && nul)
        return -1; /* a third NUL */
    if (!last && !nul)
        return -1; /* missing separator */
    size_t length = (size_t)((last ? end : nul) - start);
    if (length > AMQP_SASL_FIELD_MAX)
        return -1;
    memcpy(out, start, length);
    out[length] = '\0';
    return (int)length;
}

static void amqp_sasl_process_plain(pn_transport_t *transport, const pn_bytes_t *response)
{
    struct amqp_sasl_state *state = amqp_sasl_state_of(transport);
    char authzid[AMQP_SASL_FIELD_MAX + 1], login[AMQP_SASL_FIELD_MAX + 1],
        password[AMQP_SASL_FIELD_MAX + 1];
    const char *cursor = response->start;
    const char *end = response->start + response->size;
    int authzid_len = response->size ? amqp_sasl_plain_field(cursor, end, authzid, false) : -1;
    if (authzid_len < 0) {
        amqp_sasl_refuse(transport, "%s", "malformed PLAIN response (authzid)");
        return;
    }
    cursor += authzid_len + 1;
    int login_len = amqp_sasl_plain_field(cursor, end, login, false);
    if (login_len <= 0) {
        amqp_sasl_refuse(transport, "%s",
                         login_len == 0 ? "PLAIN response without a user name"
                                        : "malformed PLAIN response (user name)");
        return;
    }
    cursor += login_len + 1;
    if (amqp_sasl_plain_field(cursor, end, password, true) < 0) {
        amqp_sasl_refuse(transport, "%s", "malformed PLAIN response (password)");
        return;
    }
    if (authzid_len > 0 && strcmp(authzid, login) != 0) {
        explicit_bzero(password, sizeof(password));
        amqp_sasl_refuse(transport, "user '%s' may not act for another authorization id", login);
        return;
    }
    char reason[200] = "";
    int rc = state->check(state->opaque, "PLAIN", login, password, state->user, sizeof(state->user),
                          reason, sizeof(reason));
    explicit_bzero(password, sizeof(password));
    if (rc == AMQP_SASL_PENDING)
        return; /* amqp_sasl_complete posts the outcome */
    if (rc != 0) {
        amqp_sasl_refuse(transport, "%s", reason[0] ? reason : "credentials refused");
        return;
    }
    pnx_sasl_set_succeeded(transport, state->user, NULL);
    pnx_sasl_set_desired_state(transport, SASL_POSTED_OUTCOME);
}

void amqp_sasl_complete(pn_transport_t *transport, const char *user, const char *reason)
{
    struct amqp_sasl_state *state = amqp_sasl_state_of(transport);
    if (!state)
        return;
    if (!user) {
        amqp_sasl_refuse(transport, "%s", reason && reason[0] ? reason : "credentials refused");
        return;
    }
    snprintf(state->user, sizeof(state->user), "%s", user);
    pnx_sasl_set_succeeded(transport, state->user, NULL);
    pnx_sasl_set_desired_state(transport, SASL_POSTED_OUTCOME);
}

/* EXTERNAL (RFC 4422 appendix A): the identity is the TLS client
 * certificate's; the response is an authzid, empty or that identity. */
static void amqp_sasl_process_external(pn_transport_t *transport, const pn_bytes_t *response)
{
    struct amqp_sasl_state *state = amqp_sasl_state_of(transport);
    if (!state->has_external) {
        amqp_sasl_refuse(transport, "%s", "EXTERNAL needs a verified TLS client certificate");
        return;
    }
    if (response->size > 0 && (response->size != strlen(state->external) ||
                               memcmp(response->start, state->external, response->size) != 0)) {
        amqp_sasl_refuse(transport,
                         "certificate user '%s' may not act for another authorization id",
                         state->external);
        return;
    }
    char reason[AMQP_SASL_FIELD_MAX + 100] = "";
    int rc = state->check(state->opaque, "EXTERNAL", state->external, NULL, state->user,
                          sizeof(state->user), reason, sizeof(reason));
    if (rc == AMQP_SASL_PENDING)
        return;
    if (rc != 0) {
        amqp_sasl_refuse(transport, "%s", reason[0] ? reason : "certificate refused");
        return;
    }
    pnx_sasl_set_succeeded(transport, state->user, NULL);
    pnx_sasl_set_desired_state(transport, SASL_POSTED_OUTCOME);
}

static void amqp_sasl_process_anonymous(pn_transport_t *transport)
{
    struct amqp_sasl_state *state = amqp_sasl_state_of(transport);
    char reason[200] = "";
    int rc = state->allow_anonymous
                 ? state->check(state->opaque, "ANONYMOUS", NULL, NULL, state->user,
                                sizeof(state->user), reason, sizeof(reason))
                 : -1;
    if (rc == AMQP_SASL_PENDING)
        return; /* amqp_sasl_complete posts the outcome */
    if (rc != 0) {
        amqp_sasl_refuse(transport, "%s",
                         reason[0] ? reason : "anonymous access is disabled (auth.anonymous)");
        return;
    }
    pnx_sasl_set_succeeded(transport, state->user, NULL);
    pnx_sasl_set_desired_state(transport, SASL_POSTED_OUTCOME);
}

/* ---- pnx_sasl_implementation ------------------------------------------------------ */

static void amqp_sasl_free(pn_transport_t *transport) { free(pnx_sasl_get_context(transport)); }

static const char *amqp_sasl_list_mechanisms(pn_transport_t *transport)
{
    return amqp_sasl_state_of(transport)->mechanisms;
}

static bool amqp_sasl_init_server(pn_transport_t *transport)
{
    pnx_sasl_set_desired_state(transport, SASL_POSTED_MECHANISMS);
    return true;
}

static bool amqp_sasl_init_client(pn_transport_t *transport)
{
    (void)transport;
    return false; /* kbridge only serves */
}

static void amqp_sasl_prepare_write(pn_transport_t *transport) { (void)transport; }

static void amqp_sasl_process_init(pn_transport_t *transport, const char *mechanism,
                                   const pn_bytes_t *response)
{
    if (mechanism && strcmp(mechanism, "PLAIN") == 0)
        amqp_sasl_process_plain(transport, response);
    else if (mechanism && strcmp(mechanism, "ANONYMOUS") == 0)
        amqp_sasl_process_anonymous(transport);
    else if (mechanism && strcmp(mechanism, "EXTERNAL") == 0)
        amqp_sasl_process_external(transport, response);
    else
        amqp_sasl_refuse(transport, "mechanism '%s' is not offered", mechanism ? mechanism : "");
}

static void amqp_sasl_process_response(pn_transport_t *transport, const pn_bytes_t *response)
{
    (void)response; /* no challenges are sent, so no response is expected */
    amqp_sasl_refuse(transport, "%s", "unexpected SASL response");
}

static bool amqp_sasl_process_mechanisms(pn_transport_t *transport, const char *mechanisms)
{
    (void)transport;
    (void)mechanisms;
    return false;
}

static void amqp_sasl_process_challenge(pn_transport_t *transport, const pn_bytes_t *challenge)
{
    (void)transport;
    (void)challenge;
}

static void amqp_sasl_process_outcome(pn_transport_t *transport, const pn_bytes_t *outcome)
{
    (void)transport;
    (void)outcome;
}

static bool amqp_sasl_can_encrypt(pn_transport_t *transport)
{
    (void)transport;
    return false;
}

static ssize_t amqp_sasl_max_encrypt_size(pn_transport_t *transport)
{
    (void)transport;
    return 0;
}

static ssize_t amqp_sasl_encode(pn_transport_t *transport, pn_bytes_t in, pn_bytes_t *out)
{
    (void)transport;
    (void)in;
    (void)out;
    return 0;
}

static ssize_t amqp_sasl_decode(pn_transport_t *transport, pn_bytes_t in, pn_bytes_t *out)
{
    (void)transport;
    (void)in;
    (void)out;
    return 0;
}

static const pnx_sasl_implementation amqp_sasl_implementation = {
    .free = amqp_sasl_free,
    .list_mechanisms = amqp_sasl_list_mechanisms,
    .init_server = amqp_sasl_init_server,
    .init_client = amqp_sasl_init_client,
    .prepare_write = amqp_sasl_prepare_write,
    .process_init = amqp_sasl_process_init,
    .process_response = amqp_sasl_process_response,
    .process_mechanisms = amqp_sasl_process_mechanisms,
    .process_challenge = amqp_sasl_process_challenge,
    .process_outcome = amqp_sasl_process_outcome,
    .can_encrypt = amqp_sasl_can_encrypt,
    .max_encrypt_size = amqp_sasl_max_encrypt_size,
    .encode = amqp_sasl_encode,
    .decode = amqp_sasl_decode,
};

int amqp_sasl_install(pn_transport_t *transport, bool allow_anonymous, const char *external,
                      amqp_sasl_check_fn check, void *opaque, char *err, size_t err_size)
{
    struct amqp_sasl_state *state = calloc(1, sizeof(*state));
    if (!state) {
        snprintf(err, err_size, "out of memory setting up SASL");
        return -1;
    }
    state->check = check;
    state->opaque = opaque;
    state->allow_anonymous = allow_anonymous;
    if (external && *external) {
        state->has_external = true;
        snprintf(state->external, sizeof(state->external), "%s", external);
    }
    snprintf(state->mechanisms, sizeof(state->mechanisms), "%sPLAIN%s",
             state->has_external ? "EXTERNAL " : "", allow_anonymous ? " ANONYMOUS" : "");
    pn_sasl_t *sasl = pn_sasl(transport);
    pn_sasl_allowed_mechs(sasl, state->mechanisms);
    /* PLAIN over plain TCP too: TLS is the listener's choice (tls:) */
    pn_sasl_set_allow_insecure_mechs(sasl, true);
    pnx_sasl_set_implementation(transport, &amqp_sasl_implementation, state);
    /* A client that sends the AMQP header without SASL is anonymous: only
     * when that is allowed. */
    pn_transport_require_auth(transport, !allow_anonymous);
    return 0;
}

const char *amqp_sasl_failure(pn_transport_t *transport)
{
    struct amqp_sasl_state *state = amqp_sasl_state_of(transport);
    return state ? state->failure : "";
}
