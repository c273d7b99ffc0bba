output "hosts" {
  description = "One object per host, the hub first: name, role, id, address (floating IP for the hub), private_address, ssh_user, volume_id (its data volume, or empty)."
  value       = module.compute.hosts
}

output "floating_ip" {
  description = "The hub's floating IP: where the course's DNS name must point."
  value       = module.compute.floating_ip
}

output "dns_record" {
  description = "The A record created for the course, or empty when none was (put floating_ip in DNS by hand)."
  value       = length(openstack_dns_recordset_v2.hub) > 0 ? openstack_dns_recordset_v2.hub[0].name : ""
}
