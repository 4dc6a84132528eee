// tlszmq_peer: a C++ TLSZMQ peer for the interoperability tests. It behaves on the wire as the
// two deployed C++ TLSZMQ implementations do (../../../shared/PROTOCOL.md), defects included,
// so that the tests prove the Go side copes with them:
//
//   --variant original  the 2012 TLSZMQ: REQ client with no identity and no verification,
//                       ROUTER server keyed on the furthest-back identity; the server's
//                       pending output is replaced instead of appended (TLS 1.3 tickets lost),
//                       it echoes the envelope before it knows it has something to send (a
//                       half-sent envelope), and any error ends the process.
//   --variant fork      the 2019 derivative: TLS 1.2 only; the client verifies the server
//                       against --ca (depth 4, no host name check), presents --cert/--key and
//                       uses the identity "client2"; the server asks for a client certificate
//                       (optional), answers every frame with exactly one frame, possibly empty,
//                       and answers close_notify with its own and deletes the session.
//
// Modes: --mode server | client | device. Build: g++ -O2 -std=c++17 tlszmq_peer.cpp -lzmq
// -lssl -lcrypto (the Makefile's cpp-peer target).
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <zmq.hpp>

#include <cstdio>
#include <stdexcept>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

struct Options {
    std::string mode = "server", variant = "original";
    std::string endpoint, frontend = "tcp://*:5556", backend = "tcp://*:5555";
    std::string cert = "server.crt", key = "server.key", ca;
    std::string message = "hello world!", tls = "any";
    int seclevel = -1;
    bool connect = false, no_tickets = false;
};

static Options opt;

static void die(const char *what) {
    // The C++ peers lose OpenSSL's text: they print "unknown".
    std::printf("An error occurred: unknown (%s)\n", what);
    std::fflush(stdout);
    std::exit(1);
}

class TLSZmq {
public:
    enum Mode { CLIENT, SERVER };

    TLSZmq(SSL_CTX *ctx, Mode mode) {
        ssl = SSL_new(ctx);
        rbio = BIO_new(BIO_s_mem());
        wbio = BIO_new(BIO_s_mem());
        SSL_set_bio(ssl, rbio, wbio);
        if (mode == CLIENT)
            SSL_set_connect_state(ssl);
        else
            SSL_set_accept_state(ssl);
    }
    ~TLSZmq() { SSL_free(ssl); }

    void put_data(const std::string &d) { zmq_to_ssl += d; }
    void write(const std::string &d) { app_to_ssl += d; }
    bool can_recv() const { return has_app; }
    bool needs_write() const { return has_net; }
    std::string read() { has_app = false; std::string d; d.swap(ssl_to_app); return d; }
    std::string get_data() { has_net = false; std::string d; d.swap(ssl_to_zmq); return d; }
    bool peer_closed() const { return closed; }

    void shutdown() {
        SSL_shutdown(ssl);
        net_write_();
    }

    void update() {
        if (!zmq_to_ssl.empty()) {
            BIO_write(rbio, zmq_to_ssl.data(), (int)zmq_to_ssl.size());
            zmq_to_ssl.clear();
        }
        if (!app_to_ssl.empty()) {
            int rc = SSL_write(ssl, app_to_ssl.data(), (int)app_to_ssl.size());
            if (rc > 0)
                app_to_ssl.clear();
            else
                check_ssl_(rc);
        }
        // SSL_read first (it runs the handshake on the bytes just put in), then the drain:
        // the seed's trace shows "95 written to BIO" then "627 read from BIO" in one update.
        net_read_();
        net_write_();
    }

private:
    SSL *ssl;
    BIO *rbio, *wbio;
    std::string zmq_to_ssl, app_to_ssl, ssl_to_app, ssl_to_zmq;
    bool has_app = false, has_net = false, closed = false;

    void check_ssl_(int rc) {
        int err = SSL_get_error(ssl, rc);
        if (err == SSL_ERROR_NONE || err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            return;
        if (err == SSL_ERROR_ZERO_RETURN) {
            closed = true;
            return;
        }
        if (opt.variant == "fork" && opt.mode == "server")
            throw std::runtime_error("ssl");
        die("ssl");
    }

    void net_write_() {
        std::string out;
        char buf[1024];
        int n;
        while ((n = BIO_read(wbio, buf, sizeof buf)) > 0)
            out.append(buf, n);
        if (out.empty())
            return;
        // The original's defect: the new output replaces what was pending.
        if (opt.variant == "original")
            ssl_to_zmq = out;
        else
            ssl_to_zmq += out;
        has_net = true;
    }

    void net_read_() {
        char buf[1024];
        int n;
        while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) {
            ssl_to_app.append(buf, n);
            has_app = true;
        }
        check_ssl_(n);
    }
};

static SSL_CTX *make_ctx(bool server) {
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (opt.seclevel >= 0)
        SSL_CTX_set_security_level(ctx, opt.seclevel);
    if (opt.variant == "fork" || opt.tls == "1.2")
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    else if (opt.tls == "1.3")
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    if (opt.no_tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    bool want_cert = server || opt.variant == "fork";
    if (want_cert && (SSL_CTX_use_certificate_chain_file(ctx, opt.cert.c_str()) != 1 ||
                      SSL_CTX_use_PrivateKey_file(ctx, opt.key.c_str(), SSL_FILETYPE_PEM) != 1)) {
        ERR_print_errors_fp(stderr);
        die("loading the certificate");
    }
    if (opt.variant == "fork") {
        if (!opt.ca.empty() && SSL_CTX_load_verify_locations(ctx, opt.ca.c_str(), nullptr) != 1)
            die("loading the CA");
        SSL_CTX_set_verify_depth(ctx, 4);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);  // server: asks, does not require
        if (server)
            SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"fork", 4);
    }
    return ctx;
}

static void send_msg(zmq::socket_t &s, const std::string &d, bool more = false) {
    s.send(zmq::buffer(d), more ? zmq::send_flags::sndmore : zmq::send_flags::none);
}

static int run_server() {
    SSL_CTX *ctx = make_ctx(true);
    zmq::context_t zctx;
    zmq::socket_t sock(zctx, zmq::socket_type::router);
    std::string ep = opt.endpoint.empty() ? "tcp://*:5556" : opt.endpoint;
    if (opt.connect)
        sock.connect(ep);
    else
        sock.bind(ep);
    std::map<std::string, TLSZmq *> conns;
    for (;;) {
        std::vector<std::string> ids;
        zmq::message_t m;
        for (;;) {  // the envelope, up to the delimiter
            if (!sock.recv(m))
                return 1;
            if (m.size() == 0)
                break;
            ids.emplace_back(static_cast<char *>(m.data()), m.size());
        }
        if (!sock.recv(m))
            return 1;
        std::string payload(static_cast<char *>(m.data()), m.size());
        if (ids.empty())
            continue;
        const std::string key = ids.back();  // the identity furthest back
        TLSZmq *&conn = conns[key];
        if (!conn)
            conn = new TLSZmq(ctx, TLSZmq::SERVER);
        bool original = opt.variant == "original";
        if (original) {  // the original echoes the envelope before it knows what it will send
            for (auto &id : ids)
                send_msg(sock, id, true);
            send_msg(sock, "", true);
        }
        std::string out;
        try {
            conn->put_data(payload);
            conn->update();
            if (conn->can_recv()) {
                std::string data = conn->read();
                std::printf("Received: %s\n", data.c_str());
                std::printf("sending data - [Got it!]\n");
                std::fflush(stdout);
                conn->write(std::string("Got it!\0", 8));
                conn->update();
            }
            if (conn->peer_closed()) {  // the fork answers close_notify and forgets the session
                conn->shutdown();
            }
            if (conn->needs_write())
                out = conn->get_data();
        } catch (std::exception &) {
            std::printf("An error occurred: unknown\n");
            std::fflush(stdout);
            delete conn;
            conns.erase(key);
        }
        if (original) {
            if (!out.empty())
                send_msg(sock, out);  // else: the half-sent envelope stays pending
        } else {
            for (auto &id : ids)
                send_msg(sock, id, true);
            send_msg(sock, "", true);
            send_msg(sock, out);  // exactly one frame, possibly empty
        }
        if (conns.count(key) && conns[key]->peer_closed()) {
            delete conns[key];
            conns.erase(key);
        }
    }
}

static int run_client() {
    SSL_CTX *ctx = make_ctx(false);
    zmq::context_t zctx;
    zmq::socket_t sock(zctx, zmq::socket_type::req);
    if (opt.variant == "fork")
        sock.set(zmq::sockopt::routing_id, "client2");
    sock.set(zmq::sockopt::linger, 1000);
    sock.set(zmq::sockopt::rcvtimeo, 10000);
    sock.connect(opt.endpoint.empty() ? "tcp://localhost:5556" : opt.endpoint);
    TLSZmq tls(ctx, TLSZmq::CLIENT);
    tls.write(opt.message);
    std::printf("Sending - [%s]\n", opt.message.c_str());
    std::fflush(stdout);
    for (int round = 0; round < 20; round++) {
        tls.update();
        if (tls.needs_write()) {
            send_msg(sock, tls.get_data());
            zmq::message_t reply;
            if (!sock.recv(reply))
                die("no reply");
            tls.put_data(std::string(static_cast<char *>(reply.data()), reply.size()));
            tls.update();
        }
        if (tls.can_recv()) {
            std::string data = tls.read();
            std::printf("Received - [%s]\n", data.c_str());
            std::fflush(stdout);
            if (opt.variant == "fork") {  // the fork says goodbye
                tls.shutdown();
                send_msg(sock, tls.get_data());
                zmq::message_t reply;
                if (!sock.recv(reply)) {}
            }
            return 0;
        }
    }
    die("no reply after 20 rounds");
    return 1;
}

static int run_device() {
    zmq::context_t zctx;
    zmq::socket_t front(zctx, zmq::socket_type::router), back(zctx, zmq::socket_type::dealer);
    front.bind(opt.frontend);
    back.bind(opt.backend);
    zmq::proxy(front, back);
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&](std::string &dst) {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            dst = argv[++i];
        };
        std::string n;
        if (a == "--mode") val(opt.mode);
        else if (a == "--variant") val(opt.variant);
        else if (a == "--endpoint") val(opt.endpoint);
        else if (a == "--frontend") val(opt.frontend);
        else if (a == "--backend") val(opt.backend);
        else if (a == "--cert") val(opt.cert);
        else if (a == "--key") val(opt.key);
        else if (a == "--ca") val(opt.ca);
        else if (a == "--message") val(opt.message);
        else if (a == "--tls") val(opt.tls);
        else if (a == "--seclevel") { val(n); opt.seclevel = std::atoi(n.c_str()); }
        else if (a == "--connect") opt.connect = true;
        else if (a == "--no-tickets") opt.no_tickets = true;
        else {
            std::fprintf(stderr, "unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    if (opt.mode == "server") return run_server();
    if (opt.mode == "client") return run_client();
    if (opt.mode == "device") return run_device();
    std::fprintf(stderr, "unknown --mode %s\n", opt.mode.c_str());
    return 2;
}
