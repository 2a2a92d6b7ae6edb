/* ticket.c - TLS session-ticket keys shared by every server context. */
#include "ticket.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];  /* AES-256-CBC */
    unsigned char hmac[32]; /* HMAC-SHA256 */
    int valid;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key keys[2]; /* [0] current, [1] previous */

/* New current key; the current one becomes the previous. */
int ticket_rotate(void)
{
    struct ticket_key k;
    if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
        RAND_bytes(k.hmac, sizeof(k.hmac)) != 1)
        return -1;
    k.valid = 1;
    pthread_mutex_lock(&lock);
    keys[1] = keys[0];
    keys[0] = k;
    pthread_mutex_unlock(&lock);
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

/* Forget both keys. */
void ticket_reset(void)
{
    pthread_mutex_lock(&lock);
    OPENSSL_cleanse(keys, sizeof(keys));
    pthread_mutex_unlock(&lock);
}

/* Key the cipher and the MAC with k (iv already filled). 0 or -1. */
static int key_contexts(const struct ticket_key *k, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                        EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    int ok = enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv)
                 : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv);
    return ok == 1 ? 0 : -1;
}

/* Seal with the current key, or open with the key the ticket names. */
int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                  EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    struct ticket_key k;
    int found = -1;
    pthread_mutex_lock(&lock);
    if (enc) {
        if (keys[0].valid)
            found = 0;
    } else {
        for (int i = 0; i < 2 && found < 0; i++)
            if (keys[i].valid && memcmp(keys[i].name, key_name, sizeof(keys[i].name)) == 0)
                found = i;
    }
    if (found >= 0)
        k = keys[found];
    pthread_mutex_unlock(&lock);
    if (found < 0)
        return enc ? -1 : 0;
    int rc = -1;
    if (enc) {
        memcpy(key_name, k.name, sizeof(k.name));
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
            goto out;
    }
    if (key_contexts(&k, iv, cctx, hctx, enc) == 0)
        rc = enc ? 1 : found == 0 ? 1 : 2;
out:
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}
