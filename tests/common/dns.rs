//! A tiny authoritative DNS server on a loopback UDP port, whose A records a test changes while
//! pingap runs. Unknown names get NXDOMAIN; other record types get an empty answer.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// The server.
pub struct DnsServer {
    /// Where it answers (UDP).
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    _stop: watch::Sender<bool>,
}

impl DnsServer {
    /// Starts one on the current tokio runtime.
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>> = Arc::default();
        let (stop, mut stopped) = watch::channel(false);
        let table = records.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (len, from) = tokio::select! {
                    received = socket.recv_from(&mut buf) => match received {
                        Ok(received) => received,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => return,
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let answer = answer(&query, &table.lock().unwrap());
                if let Ok(bytes) = answer.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        DnsServer {
            addr,
            records,
            _stop: stop,
        }
    }

    /// Makes `name` resolve to `ips` (none: NXDOMAIN).
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        let mut records = self.records.lock().unwrap();
        if ips.is_empty() {
            records.remove(name);
        } else {
            records.insert(name.to_string(), ips.to_vec());
        }
    }
}

fn answer(query: &Message, records: &HashMap<String, Vec<Ipv4Addr>>) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    for question in &query.queries {
        response.add_query(question.clone());
        let name = question
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_lowercase();
        match records.get(&name) {
            None => response.metadata.response_code = ResponseCode::NXDomain,
            Some(ips) if question.query_type() == RecordType::A => {
                for ip in ips {
                    response.add_answer(Record::from_rdata(
                        question.name().clone(),
                        0,
                        RData::A(A(*ip)),
                    ));
                }
            }
            Some(_) => {}
        }
    }
    response
}
