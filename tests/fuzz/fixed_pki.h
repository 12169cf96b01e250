/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fixed_pki.h - a fixed CA, two signer certificates (web1.example.net and
 * admin.privileged.choria) and their key, made once with the openssl
 * command line and valid until 2126, and the protocol v2 keys, so that the
 * fuzz target and its seed corpus agree on what verifies: a signed seed
 * reaches the signature check on every run. Test material only: the keys
 * are public.
 */
#ifndef CAD_FUZZ_FIXED_PKI_H
#define CAD_FUZZ_FIXED_PKI_H

/* The time the fuzz target verifies at: 2030-01-01T00:00:00Z. */
#define FUZZ_NOW 1893456000

/* Protocol v2: the organisation issuer, chain issuer and client of the
 * worked example in PROTOCOL-v2.md §11 (ed25519 seeds; their tokens are
 * valid from 2026 to 2035, so at FUZZ_NOW), and the issuer the target
 * trusts. */
#define FUZZ_V2_SEED_ORG "555e4681836ba15af2f3dd93b31a1ed9feb6b75b44773a38c1d25d22661ec92a"
#define FUZZ_V2_SEED_CHAIN "dceb05f23f22930379bb87ec23c270b9c56bc7f8bc032d2b0ad1c8919c5af769"
#define FUZZ_V2_SEED_CLIENT "4b87fa7fb91f1d16d1e2604af8fd1c1ce1d680ec71ebc5248a424d8b448c6161"
#define FUZZ_V2_ISSUER "choria=7352415b7fe1a5aac5648d09ff17b6a1fd6320ceba4dc01b662bc8245d9a6a96"

#define FUZZ_CA_PEM                                                          \
	"-----BEGIN CERTIFICATE-----\n"                                      \
	"MIIDJzCCAg+gAwIBAgIBATANBgkqhkiG9w0BAQsFADA0MRAwDgYDVQQDDAdGdXp6\n" \
	"IENBMSAwHgYDVQQKDBdjaG9yaWEtYWRhcHRlcmQgZnV6emluZzAgFw0yNjExMjQx\n" \
	"NDAxMTFaGA8yMTI2MTAzMTE0MDExMVowNDEQMA4GA1UEAwwHRnV6eiBDQTEgMB4G\n" \
	"A1UECgwXY2hvcmlhLWFkYXB0ZXJkIGZ1enppbmcwggEiMA0GCSqGSIb3DQEBAQUA\n" \
	"A4IBDwAwggEKAoIBAQDAWCPh4yhi7adKAY17CNNmUQ2NEn5X1qXeZYwUAx0t1XNQ\n" \
	"sdtupUNVm41X0Rn+s/faUzOmBfVTblWT1iojqxn4xCbFSY883cBf+WVTDw3LtDGq\n" \
	"ERJe2BHVXssOxsGlHWd6RQ2fE/DGNrYIAhDjYNWN2QZPvGcYCleaGwImDWcV+mIQ\n" \
	"0/qk1QRpD2maIkGtSJQLOIGhX7l+oA46wvBbx1W4wStf635Z4qS7z9jeRilMjicZ\n" \
	"yfMAvZbvyfZfvkE0wrtMe5kB9oBoRXTHQSd+svxlXyHRMx1twiAjDOg0tizGGQrx\n" \
	"KfPmUobUaC4ehhRZXwZ4QlUuyl/aIT56R/wFiIRNAgMBAAGjQjBAMA8GA1UdEwEB\n" \
	"/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBT2hzdnfboSTcR6NH/D\n" \
	"+tD81ZWn9zANBgkqhkiG9w0BAQsFAAOCAQEAUqm1W21FSMKhXtCM7S4jwhESBsii\n" \
	"gBzLsQ4d7evt/LI/O8WpL6jsyabwFd36l7drtNe2VYm5rbaIdTlkUo5Qx2kAWoao\n" \
	"l6EdId4cYFou2rctKBrH0dydWg+pFoZlRXyYU9vMMhgBmKCJDAWmMp4YMI66eWED\n" \
	"6C3W3+hYOvcK33mNFEoOTcoF08kehOydfGU49qj7H8tR8zktw8inkeLoNrvUYQRt\n" \
	"LnhhVjS5kaIfUElCKmLxNOOL8dSZOV/Au6piuybB51bYKm8QrTP4lO9DjXR81Mz2\n" \
	"e4a5EgAt9nm+QerIYUGmjoWrUY+Bt7spy/2D119i+vBQHe2LmlmtHqP+AA==\n"     \
	"-----END CERTIFICATE-----\n"

#define FUZZ_SIGNER_PEM                                                      \
	"-----BEGIN CERTIFICATE-----\n"                                      \
	"MIIDoTCCAomgAwIBAgIBAjANBgkqhkiG9w0BAQsFADA0MRAwDgYDVQQDDAdGdXp6\n" \
	"IENBMSAwHgYDVQQKDBdjaG9yaWEtYWRhcHRlcmQgZnV6emluZzAgFw0yNjExMjQx\n" \
	"NDAxMTFaGA8yMTI2MTAzMTE0MDExMVowPTEZMBcGA1UEAwwQd2ViMS5leGFtcGxl\n" \
	"Lm5ldDEgMB4GA1UECgwXY2hvcmlhLWFkYXB0ZXJkIGZ1enppbmcwggEiMA0GCSqG\n" \
	"SIb3DQEBAQUAA4IBDwAwggEKAoIBAQDL2t3w5dJuOnhwroXBLGPf+1XZ2xxyXiSS\n" \
	"pfxSyoB+Lcs+c8dMSW2axNeX6z6P7wWXevU2HUV6WaO/GX0UmF6prYA8L9vkX2Jc\n" \
	"mn3MlNrBvQAzNnmJ2CJvESL5OVNb/x4aLlETXxCCbyvNGriL4IqCukGi/XTbe6ta\n" \
	"eDpQx0PPArmq5Gcvgr/bsw0uEwMVkuB/n1KSo3fhpep+HfEM/6AC5ooKK3LKC7eo\n" \
	"f9ETza+B70qge3VTZu3VO5KcHjRhxhRnK9Hlx91LedEzUJFWIG7kI2GIvyj2GDP6\n" \
	"Oe+k07fIYnFxHU7JR5VGLV6q/FXcBnO1GCM4eaGkpzPdNaS794BJAgMBAAGjgbIw\n" \
	"ga8wCQYDVR0TBAIwADAOBgNVHQ8BAf8EBAMCBaAwHQYDVR0lBBYwFAYIKwYBBQUH\n" \
	"AwIGCCsGAQUFBwMBMDMGA1UdEQQsMCqCEHdlYjEuZXhhbXBsZS5uZXSCFndlYjEt\n" \
	"YWxpYXMuZXhhbXBsZS5uZXQwHQYDVR0OBBYEFBhWRVcsFc3f++FDuZFF9wv8kH8X\n" \
	"MB8GA1UdIwQYMBaAFPaHN2d9uhJNxHo0f8P60PzVlaf3MA0GCSqGSIb3DQEBCwUA\n" \
	"A4IBAQBY8LNILA40JxMchAmmFnZi/ko0rek44bCczQbcYGXDkfWVjPCZuhlZwDXk\n" \
	"ht7f3CgMsmtun5isdGjjaUK9WGMrF0Y8YhhdOzk9J6pPZ1+BOgbcUv0T5B+C/n1M\n" \
	"Cji/3iWL/ZsP6rLCOIZzbJ1jJ9IuJM65leATZApYdBSCkkKURGxDjsjDEsngGKAO\n" \
	"mxobW3KF943UzOp2DKmcTAc7J0Dn9F/Xi/KY/bdSFrC7pxCnQUwC/8DMcOzTtv8P\n" \
	"StqnHNz0u7bSZzwOxd+g9A4V8fSqhAJo98l60DYsUYnzSp1/jgrIwazhdx07BEzP\n" \
	"T6lnS+DhpiHA5gngY3BCo+P2TvBx\n"                                     \
	"-----END CERTIFICATE-----\n"

#define FUZZ_PRIVILEGED_PEM                                                  \
	"-----BEGIN CERTIFICATE-----\n"                                      \
	"MIIDZzCCAk+gAwIBAgIBAzANBgkqhkiG9w0BAQsFADA0MRAwDgYDVQQDDAdGdXp6\n" \
	"IENBMSAwHgYDVQQKDBdjaG9yaWEtYWRhcHRlcmQgZnV6emluZzAgFw0yNjExMjQx\n" \
	"NDAxMTFaGA8yMTI2MTAzMTE0MDExMVowRDEgMB4GA1UEAwwXYWRtaW4ucHJpdmls\n" \
	"ZWdlZC5jaG9yaWExIDAeBgNVBAoMF2Nob3JpYS1hZGFwdGVyZCBmdXp6aW5nMIIB\n" \
	"IjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAy9rd8OXSbjp4cK6FwSxj3/tV\n" \
	"2dsccl4kkqX8UsqAfi3LPnPHTEltmsTXl+s+j+8Fl3r1Nh1Felmjvxl9FJheqa2A\n" \
	"PC/b5F9iXJp9zJTawb0AMzZ5idgibxEi+TlTW/8eGi5RE18Qgm8rzRq4i+CKgrpB\n" \
	"ov1023urWng6UMdDzwK5quRnL4K/27MNLhMDFZLgf59SkqN34aXqfh3xDP+gAuaK\n" \
	"Cityygu3qH/RE82vge9KoHt1U2bt1TuSnB40YcYUZyvR5cfdS3nRM1CRViBu5CNh\n" \
	"iL8o9hgz+jnvpNO3yGJxcR1OyUeVRi1eqvxV3AZztRgjOHmhpKcz3TWku/eASQID\n" \
	"AQABo3IwcDAJBgNVHRMEAjAAMA4GA1UdDwEB/wQEAwIFoDATBgNVHSUEDDAKBggr\n" \
	"BgEFBQcDAjAdBgNVHQ4EFgQUGFZFVywVzd/74UO5kUX3C/yQfxcwHwYDVR0jBBgw\n" \
	"FoAU9oc3Z326Ek3EejR/w/rQ/NWVp/cwDQYJKoZIhvcNAQELBQADggEBAGubPaks\n" \
	"rq8TgReO/eXb6sRaKYlNLxq3mtsjxyWqYjq/6OGUxQ+MEJTxPcp04TmFb6r+exuB\n" \
	"jskGaaezAdWo3BLpYB1mQN6UzOOCDcqRKAgOAZyT6i2w/2ezUjtHDE5owRrYvqAe\n" \
	"BDPd+yEXofVuJCDTtLJxIXgIE7HDSGQhHGSEvy3a+dBQil7M/1/kLeLrJ5El9tso\n" \
	"HgnPJOR9GFgoJlOY4HbRchoaH72UfzKOU/uxAZf5pibxewkHzs0SPj5LUQFc8hYM\n" \
	"M4wqdEfweR5y1Xm9M0oZuLuX+kzirY13yrB31t6DNJSa6Ntg8miwao1d8WKquNiT\n" \
	"QdApRkrSn9Bw9mQ=\n"                                                 \
	"-----END CERTIFICATE-----\n"

/* The key of both signer certificates, for making seeds. */
#define FUZZ_SIGNER_KEY_PEM                                                  \
	"-----BEGIN PRIVATE KEY-----\n"                                      \
	"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDL2t3w5dJuOnhw\n" \
	"roXBLGPf+1XZ2xxyXiSSpfxSyoB+Lcs+c8dMSW2axNeX6z6P7wWXevU2HUV6WaO/\n" \
	"GX0UmF6prYA8L9vkX2Jcmn3MlNrBvQAzNnmJ2CJvESL5OVNb/x4aLlETXxCCbyvN\n" \
	"GriL4IqCukGi/XTbe6taeDpQx0PPArmq5Gcvgr/bsw0uEwMVkuB/n1KSo3fhpep+\n" \
	"HfEM/6AC5ooKK3LKC7eof9ETza+B70qge3VTZu3VO5KcHjRhxhRnK9Hlx91LedEz\n" \
	"UJFWIG7kI2GIvyj2GDP6Oe+k07fIYnFxHU7JR5VGLV6q/FXcBnO1GCM4eaGkpzPd\n" \
	"NaS794BJAgMBAAECggEAIvy9esr3AtQmN7C8ZBsqSRbp9SoWB8sAm+rBE7SNuRpC\n" \
	"98UHP6CanyWJmxlU838iho0j6NW9RvJ7mCDXxuEf3h9ZEvtj0h5M03fwf1xM71Nw\n" \
	"5VlEItRllIpsZjnghLmUgQnSAHEgdEKAUgN0CQ3Qt/8fpMm7dLAVCMH5wENy7+RJ\n" \
	"It4/xhASxnnyuqt+9e2yUU/BXuyYjskyayL7/vUYNvm4j+gQdD4aYG1/Lz136Ixf\n" \
	"f4Q/war8B5aFDyFYHaWXfBWa/HpMC/+rsLNssCqHJkVV9Rqk/Ht8/WbLcIHuNZIs\n" \
	"jMXABX4r2DUh9p9ruO5Vb1F4hOwSUGMa8I2SRJMPAQKBgQD5NvWrRq92zdlg/HpN\n" \
	"9C+a56F3Zqco24fvQGsDpF6zFp2TWpZifwgBQzywtHJr/hOTZvrDErqsOXBX/Hb4\n" \
	"8ZFfXuG31HFF6Z01XWUGJhLa6+7OHJfS6z2ZJnqr0OGYbSx2zGs1JSdTV+uTnLz6\n" \
	"yf2n+TDF9UhlZ8ID67N9/jUB/QKBgQDRZ79Ve/JmxABtdEbq/iQV6YPNump6GWCY\n" \
	"F7Q4votG9VhEwoEG6LnSGsuxYUDhyPMz29R32nckavBy8FmApoRXCueekn4XDpFr\n" \
	"B9RMG38HBh+Kcfdm/tN4ZPVSl45fpAhpXrnSAtjaXapwHSVyjOOwedW04MQwTSip\n" \
	"fMkY2sVTPQKBgDVd0YnV3ykft5cPOdmLms4fH/KDpvQW3qsbLk9fWXAcPa4aTe3V\n" \
	"qg8rKMnmOkJp7CM6gCRZ1GOhAS+2PnvcrvavSMKm2YLRHfsZftKsQIlk0ISOluxx\n" \
	"t4UeOlKkrkqHxmfCKor848jzIN1BSS6jJpBbylf5yID+kQtp48vtLci5AoGAAi0K\n" \
	"zu+XyDuXKYwAxKZZZ6Tiiru6KYSj/VCZvdE1D0qzXRuMTa8TZzyCC1jQXMhCxrIt\n" \
	"FgW+ITG/R+J5e52/WEwztfEdwE2Vc0BEk3nhqwgEQeMHSBmzxtd9uRr8DsBcmgOy\n" \
	"+Jyw9ivs/nc/EV6nawkJEHUZdMsIdiJm0IxNap0CgYEAiLki11HPAarK+Dv3pl8y\n" \
	"xEVifI8QXHBVHCdA1CZgE6OyWUEzzG6Tnlk2i7t+TZqHj9uADSZjcm/incaG3G3i\n" \
	"TK9SObCx/v+21Ctja+CDLVibKrif0n91MaF+/HkG1gTvr9PGLC+nfEqZ8neKQXeq\n" \
	"6c4kIZGzJFFCKU3yTKU+ODU=\n"                                         \
	"-----END PRIVATE KEY-----\n"

#endif
