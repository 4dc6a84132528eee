module github.com/tlszmq/tlszmq

go 1.26

require (
	github.com/libp2p/go-openssl v0.1.0
	github.com/pebbe/zmq4 v1.4.0
)

require (
	github.com/mattn/go-pointer v0.0.1 // indirect
	github.com/spacemonkeygo/spacelog v0.0.0-20180420211403-2296661a0572 // indirect
	golang.org/x/sys v0.0.0-20190626221950-04f50cda93cb // indirect
)
